package phases

import "github.com/privcloud/privcloud/phases/workflow"

// Join brings every host of cluster.yaml that is not yet in the cluster into it: workers, and control-plane
// hosts with their etcd member, added through the etcd API first so quorum is never at risk.
func Join() workflow.Workflow {
	b := &bundleState{} // verified and unpacked once, for the bundle and containerd phases
	return workflow.Workflow{Name: "join", Phases: []workflow.Phase{
		connect(),
		{Name: "discover", Short: "Find which hosts are already cluster members",
			Run: workflow.NotImplementedOnce("membership discovery comes with join")},
		preflightPhase(),
		distributeBundle(b),
		hostPrep(),
		containerd(b),
		certs(),
		{Name: "etcd-member", Short: "Add new etcd members one at a time through the etcd API, then start them", Roles: etcdMembers,
			RunHost: workflow.NotImplemented("etcd membership changes come with join")},
		controlPlanePhases(),
		nodePhases(),
		podNetwork(),
		waitNodesReady(),
	}}
}
