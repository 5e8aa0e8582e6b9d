package phases

import "github.com/privcloud/privcloud/phases/workflow"

// Upgrade moves a running cluster to spec.kubernetesVersion: control planes one at a time, then workers in
// batches, each gated on health and switched back automatically when the gate fails.
func Upgrade() workflow.Workflow {
	b := &bundleState{} // verified and unpacked once, for the bundle and containerd phases
	return workflow.Workflow{Name: "upgrade", Phases: []workflow.Phase{
		connect(),
		{Name: "plan", Short: "Check the version-skew policy, etcd compatibility and the bundle's contents",
			Run: workflow.NotImplementedOnce("upgrade apply is not built yet; privcloud upgrade plan shows what it will do")},
		{Name: "backup", Short: "Snapshot etcd and save it with the PKI and cluster.yaml",
			Run: workflow.NotImplementedOnce("the pre-upgrade snapshot comes with upgrade apply; take one now with privcloud backup")},
		distributeBundle(b),
		{Name: "control-plane", Short: "Upgrade etcd, apiserver, controller-manager and scheduler, one host at a time", Roles: controlPlane,
			RunHost: workflow.NotImplemented("control-plane upgrades come with upgrade")},
		{Name: "workers", Short: "Cordon, drain, upgrade and uncordon workers in batches",
			Run: workflow.NotImplementedOnce("worker upgrades come with upgrade")},
	}}
}
