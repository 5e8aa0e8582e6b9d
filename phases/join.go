package phases

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
)

// Join brings every host of cluster.yaml that is not yet in the cluster into it. Every phase converges, so
// the hosts already in the cluster are checked and left as they are, while the existing nodes learn the
// routes to the new nodes' pods.
func Join() workflow.Workflow { return JoinWith(nil) }

// JoinWith is Join with options read when the run starts (nil: the defaults).
func JoinWith(o *InstallOptions) workflow.Workflow {
	b := &bundleState{} // verified and unpacked once, for the bundle and containerd phases
	return workflow.Workflow{Name: "join", Phases: []workflow.Phase{
		connect(),
		{Name: "discover", Short: "Find which hosts are already cluster members", Run: discoverMembers},
		preflightPhase(),
		distributeBundle(b),
		hostPrep(),
		containerd(b),
		certs(o),
		etcd(),
		controlPlanePhases(),
		// the roles of what cluster.yaml turns on since init (Multus, the NetworkPolicy firewall): the
		// network phase below configures every node for it, and its credentials need their permissions first
		clusterRBAC(),
		nodePhases(),
		podNetwork(),
		networkPolicy(),
		waitNodesReady(),
		nodeRoles(),
		metricsEndpoint(),
		monitoringTargets(b),
		// a control plane that joined gets its context in the admin kubeconfig
		kubeconfigPhase(o),
		restartPhase(),
	}}
}

// discoverMembers asks the running cluster which nodes it has and reports the hosts that will join.
func discoverMembers(ctx context.Context, r *workflow.Run) error {
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	return withControlPlaneAPI(r, func(c *kube.Client) error {
		var joining []string
		for _, t := range r.TargetsFor(nodes) {
			_, err := c.Kube.CoreV1().Nodes().Get(ctx, t.Spec.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				joining = append(joining, t.Spec.Name)
			case err != nil:
				return fmt.Errorf("no running cluster to join (%v): bring it up with 'privcloud init'", err)
			}
		}
		if len(joining) == 0 {
			r.Warn("", "every node of cluster.yaml is already in the cluster")
		} else {
			r.Warn("", "joining: "+strings.Join(joining, ", "))
		}
		return nil
	})
}
