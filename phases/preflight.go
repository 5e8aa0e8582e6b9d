package phases

import (
	"context"
	"sync"

	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/preflight"
)

// preflightPhase gathers every host's facts in parallel, then checks them together: some problems (cloned
// machine ids) only show across hosts.
func preflightPhase() workflow.Phase {
	st := &preflightState{}
	return workflow.Phase{Name: "preflight", Short: "Check OS, swap, cgroups, clock skew, memory, disk, systemd, /dev/kvm, unique machine ids", Phases: []workflow.Phase{
		{Name: "gather", Short: "Read each host's OS, kernel, resources, cgroups and clock", RunHost: st.gather},
		{Name: "check", Short: "Check the facts against cluster.yaml; errors stop the run, warnings are reported", Run: st.check},
	}}
}

type preflightState struct {
	mu    sync.Mutex
	facts []preflight.Facts
}

func (s *preflightState) gather(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	f, err := preflight.Gather(ctx, t.Host)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.facts = append(s.facts, f)
	s.mu.Unlock()
	return nil
}

func (s *preflightState) check(_ context.Context, r *workflow.Run) error {
	s.mu.Lock()
	findings := preflight.Check(r.Cluster, s.facts)
	s.mu.Unlock()
	for _, f := range findings {
		if f.Severity == preflight.Warning {
			r.Warn(f.Host, f.Check+": "+f.Message)
		}
	}
	if preflight.HasErrors(findings) {
		return &preflight.FailedError{Findings: findings}
	}
	return nil
}
