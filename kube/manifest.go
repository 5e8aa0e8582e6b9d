package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Decode reads a stream of YAML documents (separated by ---) into objects; empty documents are skipped.
// Each object must have apiVersion, kind and metadata.name; source names the stream in errors.
func Decode(source string, data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		var m map[string]any
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue // a document holding only comments
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: document %d: not an object: %w", source, i, err)
		}
		if len(m) == 0 {
			continue
		}
		// decoded as the API machinery does it: whole numbers as int64
		obj := &unstructured.Unstructured{}
		if m["apiVersion"] == nil || m["kind"] == nil || !hasName(m) {
			return nil, fmt.Errorf("%s: document %d: apiVersion, kind and metadata.name are required", source, i)
		}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		out = append(out, obj)
	}
}

func hasName(m map[string]any) bool {
	md, _ := m["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	return name != ""
}

// installOrder ranks kinds so that what others depend on exists first: namespaces and CRDs, then identities
// and configuration, then the workloads that use them.
var installOrder = map[string]int{
	"Namespace": 1, "CustomResourceDefinition": 2, "PriorityClass": 3, "StorageClass": 4,
	"ServiceAccount": 5, "ClusterRole": 6, "ClusterRoleBinding": 7, "Role": 8, "RoleBinding": 9,
	"Secret": 10, "ConfigMap": 11, "PersistentVolume": 12, "PersistentVolumeClaim": 13, "Service": 14,
	"DaemonSet": 15, "Deployment": 16, "StatefulSet": 17, "Job": 18,
}

// SortForApply orders objs for applying (stable for kinds of equal rank; unknown kinds, such as custom
// resources, last).
func SortForApply(objs []*unstructured.Unstructured) {
	rank := func(o *unstructured.Unstructured) int {
		if r, ok := installOrder[o.GetKind()]; ok {
			return r
		}
		return 100
	}
	sort.SliceStable(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) })
}

// equalJSON compares two decoded JSON values, treating numbers by value.
func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	json.Unmarshal(ja, &va)
	json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}
