package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostlock"
	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

// RecordDir is where each host keeps the record of the phases completed on it, one JSON file per workflow.
const RecordDir = "/var/lib/privcloud/phases"

// Run is the state one workflow execution shares between its phases.
type Run struct {
	Workflow string
	// Command is the command that runs the workflow, named in resume hints; empty means Workflow's name.
	Command string
	// NoResume: the command has no --from (see Workflow.NoResume).
	NoResume    bool
	Cluster     *api.Cluster
	Targets     []*Target
	DryRun      bool
	Reporter    *report.Reporter
	Concurrency int
	// Scope, when not empty, names the hosts per-host phases act on (reset --hosts); the others are only
	// connected to.
	Scope []string
	// NoRecords: no phase completion is recorded on hosts.
	NoRecords bool
	// Owner takes each host's lock for the run; nil takes none.
	Owner *hostlock.Owner
	// Connect opens the connection to a host; the connect phase calls it.
	Connect func(ctx context.Context, h api.Host) (ssh.Host, error)
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Shared holds what the phases of one run share, keyed by types of the phases' own (a rollout's turns).
	Shared sync.Map

	mu      sync.Mutex
	current string // the phase being run; phases run one after another
	changes map[string]int
	records map[string]map[string]Record
}

// Record is one completed phase in a host's record.
type Record struct {
	CompletedAt time.Time `json:"completedAt"`
	DurationMS  float64   `json:"durationMs"`
}

// TargetsFor returns the targets a per-host phase runs on: those with any of roles, or all when roles is empty.
func (r *Run) TargetsFor(roles []api.Role) []*Target {
	if len(roles) == 0 {
		return r.Targets
	}
	var out []*Target
	for _, t := range r.Targets {
		for _, role := range roles {
			if t.Spec.HasRole(role) {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// Changed notes that a phase changed something on host (empty for the cluster as a whole) and reports what;
// the summary counts changes so a converged re-run can say "0 changed".
func (r *Run) Changed(host, what string) {
	if r.DryRun {
		return // nothing changes in a dry run: what would change was planned (Plan) as it was recorded
	}
	r.count(host)
	r.mu.Lock()
	phase := r.current
	r.mu.Unlock()
	r.Reporter.Emit(report.Event{Workflow: r.Workflow, Phase: phase, Host: host, Status: report.Changed, Message: what})
}

func (r *Run) count(host string) {
	r.mu.Lock()
	if r.changes == nil {
		r.changes = map[string]int{}
	}
	r.changes[host]++
	r.mu.Unlock()
}

func (r *Run) changeCount(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changes[host]
}

func (r *Run) totalChanges() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.changes {
		n += c
	}
	return n
}

// Plan reports an action a dry run would take (the dry-run hosts' record callback) and counts it as a change.
func (r *Run) Plan(a ssh.Action) {
	r.mu.Lock()
	phase := r.current
	r.mu.Unlock()
	r.count(a.Host)
	r.Reporter.Emit(report.Event{Workflow: r.Workflow, Phase: phase, Host: a.Host, Status: report.Planned, Message: a.String()})
}

// Wet reports whether the run makes changes. In a dry run it does not: each of plans (work the dry-run
// recorder cannot capture command by command: scripts, API calls) is reported as planned on host instead, and
// Wet returns false, so a phase writes its dry-run handling as one condition.
func (r *Run) Wet(host string, plans ...string) bool {
	if !r.DryRun {
		return true
	}
	for _, p := range plans {
		r.Plan(ssh.Action{Host: host, Kind: "run", Cmd: p})
	}
	return false
}

// Warn reports something the operator should know that does not stop the run.
func (r *Run) Warn(host, msg string) {
	r.mu.Lock()
	phase := r.current
	r.mu.Unlock()
	r.Reporter.Emit(report.Event{Workflow: r.Workflow, Phase: phase, Host: host, Status: report.Warning, Message: msg})
}

func (r *Run) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// HostError is a phase's failure on one host.
type HostError struct {
	Host string
	Err  error
}

// PhaseError is a phase that failed, cluster-wide or on some hosts. It unwraps to every underlying error, so
// errors.As(err, **ssh.UnreachableError) sees through it.
type PhaseError struct {
	Workflow string // the command that runs it ("upgrade apply")
	NoResume bool   // the command has no --from
	Phase    string
	Of       int // hosts the phase ran on
	Hosts    []HostError
	Err      error
}

func (e *PhaseError) Error() string {
	var b strings.Builder
	if e.Err != nil {
		fmt.Fprintf(&b, "phase %s failed: %v", e.Phase, e.Err)
	} else {
		fmt.Fprintf(&b, "phase %s failed on %d of %d hosts:", e.Phase, len(e.Hosts), e.Of)
		for _, h := range e.Hosts {
			fmt.Fprintf(&b, "\n  %s: %v", h.Host, h.Err)
		}
	}
	if e.NoResume {
		fmt.Fprintf(&b, "\nfix the cause, then run it again (phases are idempotent): privcloud %s", e.Workflow)
	} else {
		fmt.Fprintf(&b, "\nfix the cause, then re-run (phases are idempotent) or resume with: privcloud %s --from %s", e.Workflow, e.Phase)
	}
	return b.String()
}

// ExitClass is PhaseFailed; a cause of a higher class (an unreachable host, a held lock) wins over it.
func (e *PhaseError) ExitClass() exitclass.Class { return exitclass.PhaseFailed }

// Unwrap returns every underlying error.
func (e *PhaseError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Err}
	}
	out := make([]error, len(e.Hosts))
	for i, h := range e.Hosts {
		out[i] = h.Err
	}
	return out
}

// Execute runs steps in order and stops at the first failing phase. Per-host phases run on all their hosts
// before the next phase starts; a failure on one host lets the others finish, then stops the workflow.
func Execute(ctx context.Context, r *Run, steps []Step) (err error) {
	start := r.now()
	sum := report.Summary{DryRun: r.DryRun}
	defer func() {
		// the hosts' records are written once, when the run stops, however it stops
		if rerr := r.writeRecords(ctx); rerr != nil && err == nil {
			err = rerr
		}
		r.Reporter.Emit(report.Event{Workflow: r.Workflow, Status: report.Done, Summary: &sum,
			DurationMS: report.Duration(r.now().Sub(start))})
	}()
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		sum.Phases++
		r.mu.Lock()
		r.current = st.Path
		r.mu.Unlock()
		if st.Phase.Skip != nil {
			if why := st.Phase.Skip(r); why != "" {
				sum.Skipped++
				r.emit(st.Path, "", report.Skipped, 0, why, nil)
				continue
			}
		}
		var err error
		if st.Phase.Run != nil {
			err = r.runOnce(ctx, st)
		} else {
			err = r.runPerHost(ctx, st)
		}
		var skip *SkipError
		switch {
		case errors.As(err, &skip):
			sum.Skipped++
		case err != nil:
			sum.Failed++
			sum.Changed = r.totalChanges()
			return err
		default:
			sum.OK++
		}
	}
	sum.Changed = r.totalChanges()
	return nil
}

func (r *Run) runOnce(ctx context.Context, st Step) error {
	// a cluster-wide phase changes hosts too (etcd members, RBAC through a control plane): count them all
	before := r.totalChanges()
	t0 := r.now()
	r.emit(st.Path, "", report.Started, 0, "", nil)
	err := st.Phase.Run(ctx, r)
	d := r.now().Sub(t0)
	status := r.statusOf(err, r.totalChanges() > before)
	r.emit(st.Path, "", status, d, skipReason(err), reportedErr(err))
	if err == nil || status == report.Skipped {
		return err // a SkipError goes up so the summary counts the phase as skipped
	}
	return &PhaseError{Workflow: r.command(), NoResume: r.NoResume, Phase: st.Path, Err: err}
}

func (r *Run) command() string {
	if r.Command != "" {
		return r.Command
	}
	return r.Workflow
}

// InScope tells whether per-host phases act on the host.
func (r *Run) InScope(host string) bool { return len(r.Scope) == 0 || slices.Contains(r.Scope, host) }

func (r *Run) runPerHost(ctx context.Context, st Step) error {
	targets := r.TargetsFor(st.Phase.Roles)
	if !st.Phase.EveryHost {
		targets = slices.DeleteFunc(slices.Clone(targets), func(t *Target) bool { return !r.InScope(t.Spec.Name) })
	}
	if len(targets) == 0 {
		r.emit(st.Path, "", report.Skipped, 0, "no host has role "+rolesText(st.Phase.Roles), nil)
		return Skip("no matching host")
	}
	t0 := r.now()
	errs := parallel.ForEach(ctx, len(targets), r.Concurrency, func(i int) error {
		return r.runOnHost(ctx, st, targets[i])
	})

	perr := &PhaseError{Workflow: r.command(), NoResume: r.NoResume, Phase: st.Path, Of: len(targets)}
	skipped := 0
	for i, err := range errs {
		var skip *SkipError
		switch {
		case err == nil:
		case errors.As(err, &skip):
			skipped++
		default:
			perr.Hosts = append(perr.Hosts, HostError{Host: targets[i].Spec.Name, Err: err})
		}
	}
	d := r.now().Sub(t0)
	msg := fmt.Sprintf("%d host(s)", len(targets))
	switch {
	case len(perr.Hosts) > 0:
		r.emit(st.Path, "", r.statusOf(perr, false), d, fmt.Sprintf("failed on %d of %d host(s)", len(perr.Hosts), len(targets)), nil)
		return perr
	case skipped == len(targets):
		r.emit(st.Path, "", report.Skipped, d, msg, nil)
		return Skip("skipped on every host")
	}
	r.emit(st.Path, "", report.OK, d, msg, nil)
	return nil
}

func (r *Run) runOnHost(ctx context.Context, st Step, t *Target) error {
	name := t.Spec.Name
	before := r.changeCount(name)
	t0 := r.now()
	r.emit(st.Path, name, report.Started, 0, "", nil)
	err := st.Phase.RunHost(ctx, r, t)
	d := r.now().Sub(t0)
	if err == nil && !r.DryRun && !r.NoRecords {
		r.completed(t, st.Path, d)
	}
	r.emit(st.Path, name, r.statusOf(err, r.changeCount(name) > before), d, skipReason(err), reportedErr(err))
	return err
}

// completed notes a phase completed on the host, for its record.
func (r *Run) completed(t *Target, path string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.records == nil {
		r.records = map[string]map[string]Record{}
	}
	if r.records[t.Spec.Name] == nil {
		r.records[t.Spec.Name] = map[string]Record{}
	}
	r.records[t.Spec.Name][path] = Record{CompletedAt: r.now().UTC(), DurationMS: *report.Duration(d)}
}

// writeRecords adds the phases each host completed in this run to its record, one atomic write per host at
// the end of the run (a write per phase was a dozen commands per host on a run that changes nothing). A run
// stopped by the operator still records what it completed; one killed outright leaves the previous record.
func (r *Run) writeRecords(ctx context.Context) error {
	r.mu.Lock()
	var targets []*Target
	for _, t := range r.Targets {
		if len(r.records[t.Spec.Name]) > 0 && t.Host != nil {
			targets = append(targets, t)
		}
	}
	r.mu.Unlock()
	if len(targets) == 0 {
		return nil
	}
	// a cancelled run records what it did: the write gets a short time of its own
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	errs := parallel.ForEach(ctx, len(targets), r.Concurrency, func(i int) error {
		t := targets[i]
		recs, err := ReadRecords(ctx, t.Host, r.Workflow)
		if err != nil {
			return err
		}
		r.mu.Lock()
		maps.Copy(recs, r.records[t.Spec.Name])
		r.mu.Unlock()
		data, err := json.MarshalIndent(recs, "", "  ")
		if err != nil {
			return err
		}
		_, err = t.Host.Upload(ctx, ssh.Bytes(append(data, '\n')), recordPath(r.Workflow), 0o644)
		return err
	})
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", targets[i].Spec.Name, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("the phases completed, but their record (%s) could not be written on %s", recordPath(r.Workflow), strings.Join(failed, "; "))
	}
	return nil
}

// ReadRecords returns the phases of workflow completed on host, by path; none when there is no record yet.
func ReadRecords(ctx context.Context, h ssh.Host, workflow string) (map[string]Record, error) {
	recs := map[string]Record{}
	data, err := h.ReadFile(ctx, recordPath(workflow))
	if errors.Is(err, fs.ErrNotExist) {
		return recs, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("%s: phase record %s is corrupt: %w", h.Name(), recordPath(workflow), err)
	}
	return recs, nil
}

// recordPath is the record file of a workflow ("certs renew" -> certs-renew.json).
func recordPath(workflow string) string {
	return RecordDir + "/" + strings.ReplaceAll(workflow, " ", "-") + ".json"
}

func (r *Run) emit(phase, host string, s report.Status, d time.Duration, msg string, err error) {
	e := report.Event{Workflow: r.Workflow, Phase: phase, Host: host, Status: s, Message: msg}
	if s != report.Started && s != report.Skipped || d > 0 {
		e.DurationMS = report.Duration(d)
	}
	if err != nil {
		e.Error = err.Error()
	}
	r.Reporter.Emit(e)
}

// statusOf grades a phase's outcome; in a dry run, changes are only planned.
func (r *Run) statusOf(err error, changed bool) report.Status {
	var skip *SkipError
	switch {
	case err == nil && changed && r.DryRun:
		return report.Planned
	case err == nil && changed:
		return report.Changed
	case err == nil:
		return report.OK
	case errors.As(err, &skip):
		return report.Skipped
	}
	return report.Failed
}

func skipReason(err error) string {
	var skip *SkipError
	if errors.As(err, &skip) {
		return skip.Reason
	}
	return ""
}

func reportedErr(err error) error {
	var skip *SkipError
	if errors.As(err, &skip) {
		return nil
	}
	return err
}

func rolesText(roles []api.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}
