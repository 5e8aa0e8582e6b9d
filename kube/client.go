// Package kube is privcloud's Kubernetes API client: client-go reaching kube-apiserver through a dial
// function (the SSH connection to a control-plane host, so no port is opened and no kubectl is needed),
// server-side apply of manifests, and waits on real readiness.
package kube

import (
	"context"
	"fmt"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager is the server-side apply field manager privcloud owns its fields as.
const FieldManager = "privcloud"

// Dial opens a connection to the API server's address on the far side.
type Dial func(ctx context.Context, network, address string) (net.Conn, error)

// Client is a typed and a dynamic client sharing one connection path.
type Client struct {
	Kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
	close  func()
}

// New returns a client authenticating with kubeconfig's credentials and verifying the server with its CA,
// whose every connection is dial(ctx, "tcp", server): server is the address as seen from where dial
// lands (127.0.0.1:6443 on a control-plane host), and must be in the API server certificate.
func New(kubeconfig, server string, dial Dial) (*Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Host = "https://" + server
	cfg.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, "tcp", server) }
	cfg.Timeout = 30 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "privcloud"
	return NewForConfig(cfg)
}

// NewForConfig builds the client from a rest.Config.
func NewForConfig(cfg *rest.Config) (*Client, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return &Client{Kube: kube, dyn: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
		close:  httpClient.CloseIdleConnections}, nil
}

// Close releases the connections.
func (c *Client) Close() { c.close() }

// resource is the dynamic client for obj's kind, in obj's namespace when the kind is namespaced.
func (c *Client) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// a kind defined by a CRD applied moments ago: discovery is read again once
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name(obj), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return c.dyn.Resource(m.Resource), nil
}

// Result is what applying one object did.
type Result struct {
	Object  string // Kind namespace/name
	Changed bool
}

// Apply server-side applies objs in order as FieldManager, taking ownership of conflicting fields (privcloud
// is the source of truth for what it renders). An object counts as changed when it did not exist or its
// resourceVersion moved. With dryRun the API server validates and admits every object without storing it.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) ([]Result, error) {
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var out []Result
	if dryRun {
		var err error
		if objs, err = c.intoExistingNamespaces(ctx, objs); err != nil {
			return nil, err
		}
	}
	for _, obj := range objs {
		ri, err := c.resource(obj)
		if err != nil {
			return out, err
		}
		before, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return out, fmt.Errorf("%s: %w", Name(obj), err)
		}
		after, err := ri.Apply(ctx, obj.GetName(), obj, opts)
		if err != nil {
			return out, fmt.Errorf("apply %s: %w", Name(obj), err)
		}
		changed := before == nil || before.GetResourceVersion() != after.GetResourceVersion()
		if dryRun {
			changed = before == nil || !sameApplied(before, after)
		}
		out = append(out, Result{Object: Name(obj), Changed: changed})
	}
	return out, nil
}

// intoExistingNamespaces copies objects that live in a namespace the same set creates into namespace
// "default" when that namespace does not exist yet: a dry run stores nothing, so the namespace would not be
// there for them, and the API server's checks of an object do not depend on which namespace holds it.
func (c *Client) intoExistingNamespaces(ctx context.Context, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	missing := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "Namespace" || o.GetAPIVersion() != "v1" {
			continue
		}
		cur, err := c.Get(ctx, o)
		if err != nil {
			return nil, err
		}
		missing[o.GetName()] = cur == nil
	}
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o
		if missing[o.GetNamespace()] {
			out[i] = o.DeepCopy()
			out[i].SetNamespace("default")
		}
	}
	return out, nil
}

// sameApplied tells whether a dry run left an existing object as it was (the server keeps the
// resourceVersion in a dry run, so compare what it would store).
func sameApplied(before, after *unstructured.Unstructured) bool {
	b, a := before.DeepCopy(), after.DeepCopy()
	for _, o := range []*unstructured.Unstructured{b, a} {
		o.SetManagedFields(nil)
		o.SetResourceVersion("")
		o.SetGeneration(0)
	}
	return equalJSON(b.Object, a.Object)
}

// Get reads obj's current state from the API server (nil when it does not exist).
func (c *Client) Get(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ri, err := c.resource(obj)
	if err != nil {
		return nil, err
	}
	cur, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cur, err
}

// Delete removes obj (its apiVersion, kind, namespace and name) and reports whether it existed. It does not
// wait for the object to go.
func (c *Client) Delete(ctx context.Context, obj *unstructured.Unstructured) (bool, error) {
	ri, err := c.resource(obj)
	if err != nil {
		return false, err
	}
	err = ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// Prune deletes the objects of kinds whose labels match selector, in every namespace, that are not among keep
// (matched by kind, namespace and name), and returns what it deleted as Name does. A kind the API server does
// not serve has nothing to delete. It does not wait for the objects to go.
func (c *Client) Prune(ctx context.Context, kinds []schema.GroupVersionKind, selector string, keep []*unstructured.Unstructured) ([]string, error) {
	kept := map[string]bool{}
	for _, o := range keep {
		kept[Name(o)] = true
	}
	var deleted []string
	for _, gvk := range kinds {
		probe := &unstructured.Unstructured{}
		probe.SetGroupVersionKind(gvk) // no namespace: every namespace's
		ri, err := c.resource(probe)
		if meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return deleted, err
		}
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return deleted, fmt.Errorf("list %s: %w", gvk.Kind, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			o.SetGroupVersionKind(gvk)
			if kept[Name(o)] {
				continue
			}
			if found, err := c.Delete(ctx, o); err != nil {
				return deleted, fmt.Errorf("delete %s: %w", Name(o), err)
			} else if found {
				deleted = append(deleted, Name(o))
			}
		}
	}
	return deleted, nil
}

// MergePatch applies a JSON merge patch to the object obj names (its apiVersion, kind, namespace and name).
func (c *Client) MergePatch(ctx context.Context, obj *unstructured.Unstructured, patch []byte) error {
	ri, err := c.resource(obj)
	if err != nil {
		return err
	}
	_, err = ri.Patch(ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// Name is "Kind namespace/name" (or "Kind name" for cluster-scoped objects), as reports name objects.
func Name(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + " " + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetName()
}
