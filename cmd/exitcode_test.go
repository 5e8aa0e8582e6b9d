package cmd

import (
	"errors"
	"fmt"
	"testing"

	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/fleet"
	"github.com/privcloud/privcloud/hostlock"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/preflight"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// TestExitCodePrecedence pins which code wins when an error's tree holds errors of several kinds: usage,
// then config, unreachable, locked, then a failed phase or check.
func TestExitCodePrecedence(t *testing.T) {
	plain := errors.New("boom")
	usage := &usageError{err: plain}
	selection := &workflow.SelectionError{Flag: "only", Path: "certz", Workflow: "init"}
	config := &configError{err: plain, path: "cluster.yaml"}
	missing := &pki.MissingError{Items: []string{"ca"}}
	unreachable := &ssh.UnreachableError{Host: "h1", Address: "10.0.0.1:22", Err: plain}
	fleetUnreachable := &fleet.Error{Unreachable: []string{"h1"}}
	fleetFailed := &fleet.Error{Failed: []string{"h1"}}
	held := &hostlock.HeldError{Host: "h1", Holder: "another run", Path: "/run/privcloud.lock"}
	onHosts := func(errs ...error) *workflow.PhaseError {
		p := &workflow.PhaseError{Workflow: "init", Phase: "etcd", Of: len(errs)}
		for i, err := range errs {
			p.Hosts = append(p.Hosts, workflow.HostError{Host: fmt.Sprintf("h%d", i+1), Err: err})
		}
		return p
	}
	clusterWide := func(err error) *workflow.PhaseError {
		return &workflow.PhaseError{Workflow: "init", Phase: "certs", Err: err}
	}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"unclassified", plain, ExitFailure},
		{"unclassified, wrapped", fmt.Errorf("context: %w", plain), ExitFailure},

		{"usage", usage, ExitUsage},
		{"selection", selection, ExitUsage},
		{"config", config, ExitInvalidConfig},
		{"missing external-CA files", missing, ExitInvalidConfig},
		{"unreachable host", unreachable, ExitUnreachable},
		{"fleet with an unreachable host", fleetUnreachable, ExitUnreachable},
		{"fleet with failed hosts only", fleetFailed, ExitPhaseFailed},
		{"fleet with both", &fleet.Error{Failed: []string{"h1"}, Unreachable: []string{"h2"}}, ExitUnreachable},
		{"held lock", held, ExitLocked},
		{"phase", clusterWide(plain), ExitPhaseFailed},
		{"preflight", &preflight.FailedError{}, ExitPhaseFailed},
		{"certificate problems", &certProblemsError{problems: []string{"ca: expired"}}, ExitPhaseFailed},
		{"bundle does not verify", &bundle.VerifyError{Bundle: "b.tar.zst", Problems: []string{"x"}}, ExitPhaseFailed},
		{"add-ons not ready", &notReadyError{addons: []string{"coredns"}}, ExitPhaseFailed},
		{"upgrade refused", &upgrade.RefusedError{Reasons: []string{"downgrade"}}, ExitPhaseFailed},
		{"silent certificate problems", &silentError{&certProblemsError{problems: []string{"x"}}}, ExitPhaseFailed},

		{"phase wrapping a held lock", clusterWide(held), ExitLocked},
		{"phase with a held lock on a host", onHosts(plain, held), ExitLocked},
		{"phase wrapping an unreachable host", clusterWide(unreachable), ExitUnreachable},
		{"phase with an unreachable host", onHosts(plain, unreachable), ExitUnreachable},
		{"unreachable beats locked", onHosts(held, unreachable), ExitUnreachable},
		{"phase wrapping a fleet with an unreachable host", clusterWide(fleetUnreachable), ExitUnreachable},
		{"phase wrapping a fleet with failed hosts", clusterWide(fleetFailed), ExitPhaseFailed},
		{"wrapped phase wrapping an unreachable host", fmt.Errorf("init: %w", onHosts(unreachable)), ExitUnreachable},
		{"config beats unreachable", errors.Join(unreachable, config), ExitInvalidConfig},
		{"config beats locked", errors.Join(held, missing), ExitInvalidConfig},
		{"usage beats config", &usageError{err: config}, ExitUsage},
		{"usage beats everything", errors.Join(clusterWide(held), unreachable, config, selection), ExitUsage},
		{"locked beats a failed check", errors.Join(&preflight.FailedError{}, held), ExitLocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
