package phases

import (
	"context"

	"github.com/privcloud/privcloud/phases/workflow"
)

// applyKataRuntimeClass creates the RuntimeClass pods select to run in Kata VMs: its handler is the runtime
// containerd/config registered, its overhead the resources each VM costs beyond its containers.
func applyKataRuntimeClass(ctx context.Context, r *workflow.Run) error {
	kata := r.Cluster.Spec.Containerd.Kata
	if r.DryRun {
		r.Plan(sshAction("", "apply RuntimeClass "+kata.RuntimeClassName+" (handler "+kata.Handler+")"))
		return nil
	}
	return withControlPlaneAPI(r, func(c *apiClient) error {
		obj := map[string]any{
			"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
			"metadata": map[string]any{"name": kata.RuntimeClassName, "labels": map[string]string{"app.kubernetes.io/managed-by": "privcloud"}},
			"handler":  kata.Handler,
			"overhead": map[string]any{"podFixed": map[string]string{"cpu": kata.OverheadCPU, "memory": kata.OverheadMemory}},
		}
		changed, err := c.apply(ctx, "/apis/node.k8s.io/v1/runtimeclasses/"+kata.RuntimeClassName, obj)
		if err == nil && changed {
			r.Changed("", "RuntimeClass "+kata.RuntimeClassName)
		}
		return err
	})
}
