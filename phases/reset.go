package phases

import "github.com/privcloud/privcloud/phases/workflow"

// Reset returns hosts to their state before privcloud: an etcd member leaves the cluster first, then services,
// files, CNI configuration, iptables rules and mounts go.
func Reset() workflow.Workflow {
	return workflow.Workflow{Name: "reset", Phases: []workflow.Phase{
		connect(),
		{Name: "drain", Short: "Cordon and drain the nodes being reset",
			Run: workflow.NotImplementedOnce("draining comes with reset")},
		{Name: "etcd-member", Short: "Remove the host's etcd member from a running cluster", Roles: etcdMembers,
			RunHost: workflow.NotImplemented("etcd membership changes come with reset")},
		{Name: "services", Short: "Stop and remove privcloud's systemd units",
			RunHost: workflow.NotImplemented("cleanup comes with reset")},
		{Name: "network", Short: "Remove CNI configuration, interfaces and iptables rules",
			RunHost: workflow.NotImplemented("cleanup comes with reset")},
		{Name: "files", Short: "Unmount and remove privcloud's files and data directories",
			RunHost: workflow.NotImplemented("cleanup comes with reset")},
	}}
}
