package kube

import (
	"context"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

var nadKind = schema.GroupVersionKind{Group: "k8s.cni.cncf.io", Version: "v1", Kind: "NetworkAttachmentDefinition"}

func nad(ns, name string, labels map[string]string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{}
	o.SetGroupVersionKind(nadKind)
	o.SetNamespace(ns)
	o.SetName(name)
	o.SetLabels(labels)
	return o
}

type staticMapper struct{ meta.RESTMapper }

func (staticMapper) Reset() {}

// Prune deletes, in every namespace, the objects of the kinds named that carry the label and are not kept: what
// cluster.yaml no longer asks for. Objects without the label (the user's own) and kept ones stay.
func TestPruneDeletesOnlyLabelledObjectsNotKept(t *testing.T) {
	ctx := context.Background()
	ours := map[string]string{"app.kubernetes.io/managed-by": "privcloud"}
	gvr := schema.GroupVersionResource{Group: nadKind.Group, Version: nadKind.Version, Resource: "networkattachmentdefinitions"} // as the fake tracker guesses it
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "NetworkAttachmentDefinitionList"},
		nad("default", "storage", ours), nad("default", "gone", ours), nad("team-a", "gone-too", ours), nad("default", "users-own", nil))
	m := meta.NewDefaultRESTMapper(nil)
	m.AddSpecific(nadKind, gvr, gvr, meta.RESTScopeNamespace)
	c := &Client{dyn: dyn, mapper: staticMapper{m}}

	unserved := schema.GroupVersionKind{Group: "example.io", Version: "v1", Kind: "Unserved"}
	deleted, err := c.Prune(ctx, []schema.GroupVersionKind{nadKind, unserved}, "app.kubernetes.io/managed-by=privcloud", []*unstructured.Unstructured{nad("default", "storage", ours)})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(deleted)
	if want := []string{"NetworkAttachmentDefinition default/gone", "NetworkAttachmentDefinition team-a/gone-too"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %q, want %q", deleted, want)
	}
	for _, o := range []*unstructured.Unstructured{nad("default", "storage", nil), nad("default", "users-own", nil)} {
		if cur, err := c.Get(ctx, o); err != nil || cur == nil {
			t.Errorf("%s was deleted (%v)", Name(o), err)
		}
	}
	if again, err := c.Prune(ctx, []schema.GroupVersionKind{nadKind}, "app.kubernetes.io/managed-by=privcloud", []*unstructured.Unstructured{nad("default", "storage", ours)}); err != nil || len(again) != 0 {
		t.Errorf("a second prune deleted %q (%v)", again, err)
	}
}
