package phases

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
)

// apiVia is an API client reaching kube-apiserver on a control-plane host (127.0.0.1:6443 there) through
// its SSH connection, as super-admin: privcloud's own bootstrap identity, never sent to hosts.
func apiVia(r *workflow.Run, h ssh.Host) (*kube.Client, error) {
	return kube.New(PKIStore(r.Cluster).KubeconfigPath("super-admin"), "127.0.0.1:6443", h.Dial)
}

// controlPlaneAPI is an API client through the first connected control-plane host that stays in the cluster
// (with reset --hosts, one not being reset).
func controlPlaneAPI(r *workflow.Run) (*kube.Client, error) {
	for _, t := range r.TargetsFor(controlPlane) {
		// a run over part of the cluster (reset --hosts) goes through a control plane that stays
		if t.Host != nil && (len(r.Scope) == 0 || !r.InScope(t.Spec.Name)) {
			return apiVia(r, t.Host)
		}
	}
	return nil, fmt.Errorf("no connected control-plane host")
}

// withControlPlaneAPI runs fn with an API client from controlPlaneAPI; a dry run skips it,
// as nothing it would wait for was started.
func withControlPlaneAPI(r *workflow.Run, fn func(*kube.Client) error) error {
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	c, err := controlPlaneAPI(r)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// applyObjects server-side applies objs and reports each one that changed.
func applyObjects(ctx context.Context, r *workflow.Run, c *kube.Client, objs ...*unstructured.Unstructured) error {
	res, err := c.Apply(ctx, objs, false)
	for _, o := range res {
		if o.Changed {
			r.Changed("", o.Object)
		}
	}
	return err
}

// object builds an unstructured object from its parts, labelled as privcloud's.
func object(apiVersion, kind, name string, fields map[string]any) *unstructured.Unstructured {
	obj := map[string]any{"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": name, "labels": map[string]any{"app.kubernetes.io/managed-by": "privcloud"}}}
	for k, v := range fields {
		obj[k] = v
	}
	return &unstructured.Unstructured{Object: obj}
}
