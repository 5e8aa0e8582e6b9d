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
		{Name: "addons", Short: "Apply the add-ons with server-side apply", Phases: []workflow.Phase{
			{Name: "coredns", Short: "Cluster DNS at the clusterDNS address",
				Skip: func(r *workflow.Run) string { return disabled(r.Cluster.Spec.Addons.CoreDNS.Enabled, "coredns") },
				Run:  workflow.NotImplementedOnce("add-ons come with the add-on phases")},
			{Name: "kata", Short: "The kata RuntimeClass (handler and pod overhead)",
				Skip: func(r *workflow.Run) string {
					return disabledBool(r.Cluster.Spec.Containerd.Kata.Enabled, "containerd.kata")
				},
				Run: applyKataRuntimeClass},
			{Name: "multus", Short: "Multus and the NetworkAttachmentDefinitions of cluster.yaml",
				Skip: func(r *workflow.Run) string { return disabled(r.Cluster.Spec.Addons.Multus.Enabled, "multus") },
				Run:  workflow.NotImplementedOnce("add-ons come with the add-on phases")},
			{Name: "quay", Short: "The Quay registry with PostgreSQL and Redis",
				Skip: func(r *workflow.Run) string { return disabledBool(r.Cluster.Spec.Addons.Quay.Enabled, "quay") },
				Run:  workflow.NotImplementedOnce("add-ons come with the add-on phases")},
		}},
		kubeconfigPhase(),
	}}
}

func disabled(enabled *bool, name string) string {
	if enabled != nil && *enabled {
		return ""
	}
	return name + " is disabled in cluster.yaml"
}

func disabledBool(enabled bool, name string) string { return disabled(&enabled, name) }
