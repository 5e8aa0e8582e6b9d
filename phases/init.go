package phases

import "github.com/privcloud/privcloud/phases/workflow"

// Init brings up a new cluster from cluster.yaml, top to bottom.
func Init() workflow.Workflow {
	b := &bundleState{} // verified and unpacked once, for the bundle and containerd phases
	return workflow.Workflow{Name: "init", Phases: []workflow.Phase{
		connect(),
		preflightPhase(),
		distributeBundle(b),
		hostPrep(),
		containerd(b),
		certs(),
		etcd(),
		controlPlanePhases(),
		clusterRBAC(),
		nodePhases(),
		podNetwork(),
		waitNodesReady(),
		addonPhases(b),
		kubeconfigPhase(),
	}}
}
