package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	objs, err := Decode("test", []byte(doc))
	if err != nil || len(objs) != 1 {
		t.Fatalf("Decode: %v (%d objects)", err, len(objs))
	}
	return objs[0]
}

func TestReady(t *testing.T) {
	for _, tc := range []struct {
		doc   string
		ready bool
		why   string
	}{
		{`{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 1, replicas: 2, updatedReplicas: 2, availableReplicas: 2}}`, false, "not seen the latest spec"},
		{`{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 2, replicas: 3, updatedReplicas: 2, availableReplicas: 2}}`, false, "1 old replicas"},
		{`{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 1}}`, false, "1 of 2 replicas available"},
		{`{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}}`, true, ""},
		{`{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 1}, spec: {}, status: {observedGeneration: 1}}`, false, "0 of 1 replicas updated"},
		{`{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: d, generation: 1}, status: {observedGeneration: 1, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 2}}`, false, "2 of 3 pods available"},
		{`{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: d, generation: 1}, status: {observedGeneration: 1, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 3}}`, true, ""},
		{`{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: c, generation: 1}, status: {conditions: [{type: NamesAccepted, status: "True"}]}}`, false, "not established"},
		{`{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, metadata: {name: c, generation: 1}, status: {conditions: [{type: Established, status: "True"}]}}`, true, ""},
		{`{apiVersion: monitoring.coreos.com/v1, kind: Prometheus, metadata: {name: p, generation: 2}}`, false, "not reported on it"},
		{`{apiVersion: monitoring.coreos.com/v1, kind: Prometheus, metadata: {name: p, generation: 2}, status: {conditions: [{type: Available, status: "True", observedGeneration: 1}]}}`, false, "not reconciled its latest change"},
		{`{apiVersion: monitoring.coreos.com/v1, kind: Alertmanager, metadata: {name: a, generation: 2}, status: {conditions: [{type: Reconciled, status: "True", observedGeneration: 2}, {type: Available, status: "False", observedGeneration: 2, message: "0 of 1 ready"}]}}`, false, "not available: 0 of 1 ready"},
		{`{apiVersion: monitoring.coreos.com/v1, kind: Prometheus, metadata: {name: p, generation: 2}, status: {conditions: [{type: Available, status: "True", observedGeneration: 2}]}}`, true, ""},
		{`{apiVersion: example.com/v1, kind: Prometheus, metadata: {name: p}}`, true, ""},
		{`{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}`, true, ""},
	} {
		ready, why := Ready(obj(t, tc.doc))
		if ready != tc.ready || !strings.Contains(why, tc.why) {
			t.Errorf("Ready(%s) = %v %q, want %v %q", tc.doc, ready, why, tc.ready, tc.why)
		}
	}
}

func TestDecodeAndOrder(t *testing.T) {
	objs, err := Decode("m.yaml", []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: x}
---
# only a comment
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
`))
	if err != nil {
		t.Fatal(err)
	}
	SortForApply(objs)
	var got []string
	for _, o := range objs {
		got = append(got, Name(o))
	}
	want := "Namespace x,CustomResourceDefinition widgets.example.com,Deployment x/d,Widget w"
	if strings.Join(got, ",") != want {
		t.Errorf("order %q, want %q", got, want)
	}
	if _, err := Decode("bad.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")); err == nil || !strings.Contains(err.Error(), "bad.yaml: document 1: apiVersion, kind and metadata.name are required") {
		t.Errorf("an object without a name must be refused with its place: %v", err)
	}
}

func TestSameApplied(t *testing.T) {
	a := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, resourceVersion: "5", managedFields: [{manager: x}]}, data: {k: v}}`)
	b := obj(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, resourceVersion: "5"}, data: {k: v}}`)
	if !sameApplied(a, b) {
		t.Error("objects differing only in managed fields are the same")
	}
	unstructured.SetNestedField(b.Object, "w", "data", "k")
	if sameApplied(a, b) {
		t.Error("a changed data value must count as a change")
	}
}

func TestReadyCustomResource(t *testing.T) {
	// custom resources have a generation but, often, no status: existing is ready
	if ok, why := Ready(obj(t, "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {name: nad, generation: 1}\nspec: {config: '{}'}\n")); !ok {
		t.Errorf("a NetworkAttachmentDefinition that exists is ready, got %q", why)
	}
}
