package phases

import "github.com/privcloud/privcloud/phases/workflow"

// InstallOptions are the operator's choices for init and join.
type InstallOptions struct {
	// ReplacePKI sends the state directory's PKI to hosts that trust another CA: for hosts rebuilt on purpose.
	ReplacePKI bool
	// KubeconfigOut is where init writes the admin kubeconfig ("" for next to cluster.yaml).
	KubeconfigOut string
}

// Init brings up a new cluster from cluster.yaml, top to bottom, with the default options.
func Init() workflow.Workflow { return InitWith(nil) }

// InitWith is Init with options read when the run starts (nil: the defaults).
func InitWith(o *InstallOptions) workflow.Workflow {
	b := &bundleState{} // verified and unpacked once, for the bundle and containerd phases
	return workflow.Workflow{Name: "init", Phases: []workflow.Phase{
		connect(),
		preflightPhase(),
		distributeBundle(b),
		hostPrep(),
		containerd(b),
		certs(o),
		etcd(),
		controlPlanePhases(),
		clusterRBAC(),
		nodePhases(),
		podNetwork(),
		networkPolicy(),
		waitNodesReady(),
		nodeRoles(),
		metricsEndpoint(),
		addonPhases(b, nil),
		kubeconfigPhase(o),
		restartPhase(),
	}}
}
