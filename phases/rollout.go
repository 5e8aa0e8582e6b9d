package phases

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// A change to the files of a service that already runs (an extra flag, a setting of cluster.yaml) is rolled
// out the way an upgrade switches versions: one control plane at a time and nodes a batch at a time, each host
// behind the upgrade's health gate. A host whose gate fails gets its previous files back and is gated again,
// and the hosts after it change nothing: the run stops with a report. Services that do not run yet (a new
// cluster, a joining host) start at once, as before.

// restartPhase restarts what the run still owes a restart at its end: the services whose phases did not run
// (their files unchanged, or selected out) and those no phase gates.
func restartPhase() workflow.Phase {
	return workflow.Phase{Name: "restart", Short: "Restart, in their turns, the services that read a file changed in this run and have not restarted since",
		RunHost: restartOwed}
}

// rolloutBatchPercent is how many nodes restart a node service together, as a percentage of them (at least one).
const rolloutBatchPercent = 10

// rollout is one run's turns: a slot per unit, and the units whose change failed on some host.
type rollout struct {
	mu     sync.Mutex
	slots  map[string]chan struct{}
	failed map[string]string // unit -> the host where its change failed its gate
	// pending are restarts owed to files sent earlier in the run (renewed certificates): host -> units; true
	// when a reload is not enough (a new binary)
	pending map[string]map[string]bool
}

type rolloutKey struct{}

func rolloutOf(r *workflow.Run) *rollout {
	v, _ := r.Shared.LoadOrStore(rolloutKey{}, &rollout{slots: map[string]chan struct{}{}, failed: map[string]string{},
		pending: map[string]map[string]bool{}})
	return v.(*rollout)
}

// owe records that units on host read a file that changed: they restart in their turn later in the run.
func (ro *rollout) owe(host string, units ...string) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if ro.pending[host] == nil {
		ro.pending[host] = map[string]bool{}
	}
	for _, u := range units {
		if _, ok := ro.pending[host][u]; !ok {
			ro.pending[host][u] = false // a reload will do, unless a new binary asks for a restart
		}
	}
}

// oweRestart records that unit on host runs an old binary: it restarts later in the run, never just reloads.
func (ro *rollout) oweRestart(host, unit string) {
	ro.owe(host, unit)
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ro.pending[host][unit] = true
}

// needsRestart tells whether the restart owed to unit on host must be one (a new binary).
func (ro *rollout) needsRestart(host, unit string) bool {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.pending[host][unit]
}

// settle takes a restart owed to unit on host, saying whether there was one.
func (ro *rollout) settle(host, unit string) bool {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	_, owed := ro.pending[host][unit]
	delete(ro.pending[host], unit)
	return owed
}

// owed are the restarts still owed on host, sorted.
func (ro *rollout) owed(host string) []string {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	var out []string
	for u := range ro.pending[host] {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// turn waits for the unit's turn on a host: size hosts at a time. It fails at once when the unit's change
// already failed elsewhere in this run.
func (ro *rollout) turn(ctx context.Context, unit string, size int) (release func(), err error) {
	ro.mu.Lock()
	slot, ok := ro.slots[unit]
	if !ok {
		slot = make(chan struct{}, size)
		ro.slots[unit] = slot
	}
	ro.mu.Unlock()
	select {
	case slot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release = func() { <-slot }
	if host := ro.failedOn(unit); host != "" {
		release()
		return nil, &rolloutStopped{unit: unit, host: host}
	}
	return release, nil
}

func (ro *rollout) failedOn(unit string) string {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.failed[unit]
}

func (ro *rollout) fail(unit, host string) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if ro.failed[unit] == "" {
		ro.failed[unit] = host
	}
}

// rolloutStopped is a host left as it was because the same change failed on another host.
type rolloutStopped struct{ unit, host string }

func (e *rolloutStopped) Error() string {
	return fmt.Sprintf("%s not changed here: its change failed its health gate on %s, so the run stops before the hosts after it", e.unit, e.host)
}

// ensureRolled is ensureService for a service that may already run: a running service whose files change is
// restarted in its turn and gated, and switched back to its previous files when the gate fails.
func ensureRolled(ctx context.Context, r *workflow.Run, t *workflow.Target, unit string, files ...hostops.File) error {
	svc, known := serviceOf(unit)
	ro := rolloutOf(r)
	owed := ro.settle(t.Spec.Name, unit) // a renewed certificate it reads
	if r.DryRun || !known {
		if owed && r.DryRun {
			r.Plan(sshAction(t.Spec.Name, "restart "+unit+" in its turn, behind its health gate (a file it reads changes)"))
		}
		return ensureService(ctx, r, t, unit, files...)
	}
	before, err := unitState(ctx, t.Host, unit)
	if err != nil {
		return err
	}
	if before.state != "active/running" { // it starts with its new files
		return ensureService(ctx, r, t, unit, files...)
	}
	previous, changed, err := readPrevious(ctx, t.Host, files)
	if err != nil || !(changed || owed) {
		if err != nil {
			return err
		}
		// its files are in place (just read): only whether it runs is left to see
		return ensureService(ctx, r, t, unit)
	}
	release, err := ro.turn(ctx, unit, turnSize(r, svc))
	if err != nil {
		return err
	}
	defer release()
	watchers := 0
	if svc.reconnects {
		watchers = endpointWatchers(ctx, r) // best effort: none read means nothing to wait for
	}
	if _, err := writeFiles(ctx, r, t, files...); err != nil {
		return err
	}
	var gateErr error
	restart := func() error {
		what, err := hostops.EnsureRunning(ctx, t.Host, unit, true)
		if what != "" {
			r.Changed(t.Spec.Name, what)
		}
		if err != nil {
			return err
		}
		gateErr = gateRunning(ctx, r, t, svc, before)
		return gateErr
	}
	if unit == "etcd" {
		err = withAPIServerDrained(ctx, r, t, restart)
	} else {
		err = restart()
	}
	if err != nil && gateErr == nil { // not the gate: nothing was proven wrong with the new files
		return err
	}
	if gateErr == nil {
		if watchers > 0 {
			waitWatchers(ctx, r, t, watchers)
		}
		return nil
	}
	ro.fail(unit, t.Spec.Name)
	if !changed { // nothing of its own to put back: the certificates it reads are new
		return &reconfigureFailure{unit: unit, host: t.Spec.Name, err: gateErr, renewed: true}
	}
	return switchBackFiles(ctx, r, t, svc, previous, before.exe, gateErr)
}

// restartOwed restarts, in their turns, the units on the host that read a file sent earlier in the run and
// have not restarted since: services privcloud gates one host at a time, the others (the API load balancer,
// kube-router) at once.
func restartOwed(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	ro := rolloutOf(r)
	if len(ro.owed(t.Spec.Name)) == 0 {
		return workflow.Skip("no file a service reads changed")
	}
	var others []string
	for _, svc := range upgradeServices {
		if slices.Contains(ro.owed(t.Spec.Name), svc.unit) {
			if err := ensureRolled(ctx, r, t, svc.unit); err != nil {
				return err
			}
		}
	}
	reload := map[string]bool{}
	for _, u := range ro.owed(t.Spec.Name) {
		reload[u] = reloadsFiles[u] != "" && !ro.needsRestart(t.Spec.Name, u)
		ro.settle(t.Spec.Name, u)
		others = append(others, u)
	}
	if len(others) == 0 {
		return nil
	}
	var script strings.Builder
	for _, u := range others {
		fail := fmt.Sprintf(" || { echo %[1]s: >&2; rc=1; }", u)
		// the condition and action of a restart, for an if or an elif
		restart := fmt.Sprintf("systemctl cat %[1]s.service >/dev/null 2>&1; then { systemctl try-restart %[1]s.service && echo %[1]s:restarted; }%[2]s", u, fail)
		if !reload[u] {
			fmt.Fprintf(&script, "if %s; fi\n", restart)
			continue
		}
		// what systemd has loaded decides: a unit of an older privcloud (or one written but not loaded yet)
		// reads its files at start only, and restarts once more
		fmt.Fprintf(&script, "if systemctl show -p ExecReload --value %[1]s.service 2>/dev/null | grep -q -- %[2]s; then { systemctl try-reload-or-restart %[1]s.service && echo %[1]s:reloaded; }%[3]s\nelif %[4]s; fi\n",
			u, ssh.ShellQuote(reloadsFiles[u]), fail, restart)
	}
	script.WriteString("exit ${rc:-0}\n")
	res, err := t.Host.Run(ctx, script.String())
	for _, line := range strings.Fields(string(res.Stdout)) { // those that did, even when another failed
		u, done, _ := strings.Cut(line, ":")
		r.Changed(t.Spec.Name, u+" "+done)
	}
	if err != nil {
		return fmt.Errorf("restart or reload what reads a changed file: %w: %s (see journalctl -u UNIT on %s)", err, strings.TrimSpace(string(res.Stderr)), t.Spec.Name)
	}
	return nil
}

// reloadsFiles are the units that read their files again on reload, so a renewed certificate or a new CA
// costs none of their connections (the API load balancer holds every connection of its node to the API),
// each with what its unit file holds when it does.
var reloadsFiles = map[string]string{pki.APILoadBalancerUnit: "stage-credentials"}

// withAPIServerDrained runs restart, a restart of the host's etcd member, with the host's API server stopped
// around it. A stacked API server reads its own member only, so requests it held while that member restarts
// would hang until their clients give up; stopped first, it drains (its shutdown delay has the load balancers
// take it out) and its clients go to the others. It is started again afterwards, and gated on /readyz when the
// member came back.
func withAPIServerDrained(ctx context.Context, r *workflow.Run, t *workflow.Target, restart func() error) error {
	api, err := unitState(ctx, t.Host, "kube-apiserver")
	if err != nil || api.state != "active/running" {
		if err != nil {
			return err
		}
		return restart()
	}
	if _, err := t.Host.Run(ctx, "systemctl stop kube-apiserver"); err != nil {
		return err
	}
	r.Changed(t.Spec.Name, "kube-apiserver stopped while its etcd member restarts")
	restartErr := restart()
	if _, err := t.Host.Run(ctx, "systemctl start kube-apiserver"); err != nil {
		return errors.Join(restartErr, err)
	}
	r.Changed(t.Spec.Name, "kube-apiserver started again")
	if restartErr != nil {
		return restartErr
	}
	svc, _ := serviceOf("kube-apiserver")
	return gateRunning(ctx, r, t, svc, api)
}

// serviceOf is the upgrade's description of a unit: its probe, lease and role.
func serviceOf(unit string) (upgradeService, bool) {
	for _, s := range upgradeServices {
		if s.unit == unit {
			return s, true
		}
	}
	return upgradeService{}, false
}

// turnSize: control-plane services one host at a time, node services a batch of the nodes.
func turnSize(r *workflow.Run, svc upgradeService) int {
	if !svc.node {
		return 1
	}
	n := 0
	for _, h := range r.Cluster.Spec.Hosts {
		if h.IsNode() {
			n++
		}
	}
	return max(1, int(math.Floor(float64(n)*rolloutBatchPercent/100)))
}

// gateRunning waits for a restarted service's gate: the same binary as before, not exiting, healthy twice.
func gateRunning(ctx context.Context, r *workflow.Run, t *workflow.Target, svc upgradeService, before unitStatus) error {
	check, done, err := healthCheck(ctx, r, t, svc, r.Cluster.Spec.KubernetesVersion, true)
	if err != nil {
		return err
	}
	defer done()
	return gate(ctx, t, svc.unit, before.exe, before.restarts, check)
}

// previousFile is a file as it was before a change: nil content when it did not exist.
type previousFile struct {
	hostops.File
	existed bool
}

// readPrevious reads the files as they are on the host, and says whether any would change. Their states come
// first, in one command: a file already in place is not read again, so a converged host costs that command.
func readPrevious(ctx context.Context, h ssh.Host, files []hostops.File) ([]previousFile, bool, error) {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	have, err := ssh.States(ctx, h, paths)
	if err != nil {
		return nil, false, err
	}
	var out []previousFile
	changed := false
	for _, f := range files {
		if in, _ := f.Put().InPlace(have); in { // content in memory: its hash cannot fail
			out = append(out, previousFile{File: f, existed: true})
			continue
		}
		data, err := h.ReadFile(ctx, f.Path)
		existed := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("read %s: %w", f.Path, err)
		}
		changed = true // missing, or its content, mode or owner differ
		out = append(out, previousFile{File: hostops.File{Path: f.Path, Content: data, Mode: f.Mode}, existed: existed})
	}
	return out, changed, nil
}

// switchBackFiles puts a service's previous files back after its gate failed, restarts it and gates it again,
// and returns the report of what happened.
func switchBackFiles(ctx context.Context, r *workflow.Run, t *workflow.Target, svc upgradeService, previous []previousFile, exe string, failure error) error {
	var restore []hostops.File
	var remove []string
	for _, p := range previous {
		if p.existed {
			restore = append(restore, p.File)
		} else {
			remove = append(remove, p.Path)
		}
	}
	state := "it runs and is healthy again"
	if err := func() error {
		if _, err := writeFiles(ctx, r, t, restore...); err != nil {
			return err
		}
		for _, p := range remove {
			if _, err := t.Host.Run(ctx, "rm -f "+ssh.ShellQuote(p)); err != nil {
				return err
			}
		}
		// the restarts counted from here; the binary is the one it ran before the change (a service that keeps
		// exiting has none running now)
		now, err := unitState(ctx, t.Host, svc.unit)
		if err != nil {
			return err
		}
		if _, err := hostops.EnsureRunning(ctx, t.Host, svc.unit, true); err != nil {
			return err
		}
		return gateRunning(ctx, r, t, svc, unitStatus{exe: exe, restarts: now.restarts})
	}(); err != nil {
		state = "but it is NOT healthy again: " + err.Error()
	}
	r.Changed(t.Spec.Name, svc.unit+" switched back to its previous configuration")
	return &reconfigureFailure{unit: svc.unit, host: t.Spec.Name, err: failure, state: state}
}

// reconfigureFailure is a change that failed its gate on a host and was switched back.
type reconfigureFailure struct {
	unit, host, state string
	err               error
	// renewed: only certificates it reads changed, so there was nothing to switch back
	renewed bool
}

func (e *reconfigureFailure) Error() string {
	if e.renewed {
		return fmt.Sprintf("%s failed its health gate on %s after the certificates it reads were renewed: %v\nThe hosts after it were not restarted. "+
			"Check the certificates with 'privcloud certs check-expiration --remote' and run again", e.unit, e.host, e.err)
	}
	return fmt.Sprintf("%s failed its health gate on %s after its configuration changed: %v\nswitched back to its previous configuration automatically: %s. "+
		"The hosts after it were not changed. Fix cluster.yaml (extraArgs and the settings of %s) and run again",
		e.unit, e.host, e.err, e.state, e.unit)
}

func (e *reconfigureFailure) Unwrap() error { return e.err }
