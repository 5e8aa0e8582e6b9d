package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// trace collects the order in which bodies ran.
type trace struct {
	mu    sync.Mutex
	calls []string
}

func (tr *trace) add(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls = append(tr.calls, s)
}

func (tr *trace) once(name string) func(context.Context, *Run) error {
	return func(context.Context, *Run) error { tr.add(name); return nil }
}

func (tr *trace) perHost(name string) func(context.Context, *Run, *Target) error {
	return func(_ context.Context, _ *Run, t *Target) error { tr.add(name + "@" + t.Spec.Name); return nil }
}

func testWorkflow(tr *trace) Workflow {
	return Workflow{Name: "init", Phases: []Phase{
		{Name: "connect", Required: true, RunHost: tr.perHost("connect")},
		{Name: "preflight", RunHost: tr.perHost("preflight")},
		{Name: "certs", Phases: []Phase{
			{Name: "ca", Run: tr.once("certs/ca")},
			{Name: "etcd-ca", Run: tr.once("certs/etcd-ca")},
			{Name: "apiserver", Run: tr.once("certs/apiserver")},
		}},
		{Name: "etcd", Roles: []api.Role{api.RoleEtcd}, RunHost: tr.perHost("etcd")},
		{Name: "kubelet", RunHost: tr.perHost("kubelet")},
	}}
}

func newRun(t *testing.T, out *bytes.Buffer, hosts ...*sshtest.Fake) *Run {
	t.Helper()
	r := &Run{Workflow: "init", Reporter: report.New(out, report.JSON), Concurrency: 4}
	for i, h := range hosts {
		roles := []api.Role{api.RoleWorker}
		if i == 0 {
			roles = []api.Role{api.RoleControlPlane, api.RoleEtcd}
		}
		r.Targets = append(r.Targets, &Target{Spec: api.Host{Name: h.HostName, Roles: roles}, Host: h})
	}
	return r
}

func events(t *testing.T, out *bytes.Buffer) []report.Event {
	t.Helper()
	var evs []report.Event
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e report.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not an NDJSON line: %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestCheckRejectsMalformedTrees(t *testing.T) {
	tr := &trace{}
	if err := testWorkflow(tr).Check(); err != nil {
		t.Fatalf("valid tree refused: %v", err)
	}
	bad := Workflow{Name: "x", Phases: []Phase{
		{Name: "a"},
		{Name: "b", Run: tr.once("b"), RunHost: tr.perHost("b")},
		{Name: "g", Run: tr.once("g"), Phases: []Phase{{Name: "c", Run: tr.once("c")}}},
		{Name: "a", Run: tr.once("a")},
		{Name: "with/slash", Run: tr.once("s")},
	}}
	err := bad.Check()
	for _, want := range []string{"phase a needs exactly one", "phase b needs exactly one", "group g must not", "phase a declared twice", "with/slash"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to mention %q", err, want)
		}
	}
}

func TestSelect(t *testing.T) {
	w := testWorkflow(&trace{})
	cases := []struct {
		name string
		sel  Selection
		want string
	}{
		{"all", Selection{}, "connect preflight certs/ca certs/etcd-ca certs/apiserver etcd kubelet"},
		{"only group", Selection{Only: []string{"certs"}}, "connect certs/ca certs/etcd-ca certs/apiserver"},
		{"only leaf", Selection{Only: []string{"certs/etcd-ca", "kubelet"}}, "connect certs/etcd-ca kubelet"},
		{"skip", Selection{Skip: []string{"certs/ca", "etcd"}}, "connect preflight certs/etcd-ca certs/apiserver kubelet"},
		{"from leaf", Selection{From: "certs/etcd-ca"}, "connect certs/etcd-ca certs/apiserver etcd kubelet"},
		{"from group", Selection{From: "certs"}, "connect certs/ca certs/etcd-ca certs/apiserver etcd kubelet"},
		{"from and skip", Selection{From: "certs", Skip: []string{"certs/apiserver"}}, "connect certs/ca certs/etcd-ca etcd kubelet"},
		{"from and only", Selection{From: "etcd", Only: []string{"certs", "kubelet"}}, "connect kubelet"},
		{"only required", Selection{Only: []string{"connect"}}, "connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := w.Select(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				got = append(got, s.Path)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("got %v, want %s", got, tc.want)
			}
		})
	}
}

func TestRequiredPhaseCannotBeSkipped(t *testing.T) {
	_, err := testWorkflow(&trace{}).Select(Selection{Skip: []string{"connect"}})
	var se *SelectionError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "cannot be skipped") {
		t.Fatalf("want a refusal to skip connect, got %v", err)
	}
}

func TestSelectUnknownPath(t *testing.T) {
	w := testWorkflow(&trace{})
	for _, sel := range []Selection{{Only: []string{"cert"}}, {Skip: []string{"certs/nope"}}, {From: "kubelet/x"}} {
		_, err := w.Select(sel)
		var se *SelectionError
		if !errors.As(err, &se) {
			t.Fatalf("%+v: want SelectionError, got %v", sel, err)
		}
		if !strings.Contains(err.Error(), "certs/etcd-ca") {
			t.Errorf("error should list the valid phases: %v", err)
		}
	}
}

func TestExecuteOrderAndRoles(t *testing.T) {
	tr := &trace{}
	var out bytes.Buffer
	cp, w1 := sshtest.NewFake("cp1"), sshtest.NewFake("w1")
	r := newRun(t, &out, cp, w1)
	r.Concurrency = 1 // sequential, so the trace order is deterministic
	steps, _ := testWorkflow(tr).Select(Selection{})
	if err := Execute(context.Background(), r, steps); err != nil {
		t.Fatal(err)
	}
	want := "connect@cp1 connect@w1 preflight@cp1 preflight@w1 certs/ca certs/etcd-ca certs/apiserver etcd@cp1 kubelet@cp1 kubelet@w1"
	if got := strings.Join(tr.calls, " "); got != want {
		t.Errorf("order:\n got %s\nwant %s", got, want)
	}
	evs := events(t, &out)
	last := evs[len(evs)-1]
	if last.Status != report.Done || last.Summary.Phases != 7 || last.Summary.OK != 7 || last.Summary.Failed != 0 {
		t.Errorf("summary = %+v", last.Summary)
	}
	for _, e := range evs {
		if e.Status == report.OK && e.DurationMS == nil {
			t.Errorf("event without timing: %+v", e)
		}
	}
}

func TestRecordsCompletedPhasesOnHosts(t *testing.T) {
	tr := &trace{}
	var out bytes.Buffer
	cp, w1 := sshtest.NewFake("cp1"), sshtest.NewFake("w1")
	r := newRun(t, &out, cp, w1)
	steps, _ := testWorkflow(tr).Select(Selection{})
	if err := Execute(context.Background(), r, steps); err != nil {
		t.Fatal(err)
	}
	cpRec, err := ReadRecords(context.Background(), cp, "init")
	if err != nil {
		t.Fatal(err)
	}
	wRec, _ := ReadRecords(context.Background(), w1, "init")
	if _, ok := cpRec["etcd"]; !ok || len(cpRec) != 4 {
		t.Errorf("cp1 record = %v, want connect, preflight, etcd, kubelet", cpRec)
	}
	if _, ok := wRec["etcd"]; ok || len(wRec) != 3 {
		t.Errorf("w1 record = %v: etcd did not run there", wRec)
	}
	_, mode, _ := cp.File(RecordDir + "/init.json")
	if mode != 0o644 {
		t.Errorf("record mode %o", mode)
	}
}

func TestParallelErrorsAggregatedPerHost(t *testing.T) {
	var out bytes.Buffer
	hosts := []*sshtest.Fake{sshtest.NewFake("cp1"), sshtest.NewFake("w1"), sshtest.NewFake("w2"), sshtest.NewFake("w3")}
	r := newRun(t, &out, hosts...)
	var after atomic.Int32
	w := Workflow{Name: "init", Phases: []Phase{
		{Name: "prep", RunHost: func(_ context.Context, _ *Run, t *Target) error {
			if t.Spec.Name == "w1" || t.Spec.Name == "w3" {
				return fmt.Errorf("disk full on %s", t.Spec.Name)
			}
			return nil
		}},
		{Name: "after", RunHost: func(context.Context, *Run, *Target) error { after.Add(1); return nil }},
	}}
	steps, _ := w.Select(Selection{})
	err := Execute(context.Background(), r, steps)
	var pe *PhaseError
	if !errors.As(err, &pe) {
		t.Fatalf("want PhaseError, got %v", err)
	}
	if pe.Phase != "prep" || pe.Of != 4 || len(pe.Hosts) != 2 || pe.Hosts[0].Host != "w1" || pe.Hosts[1].Host != "w3" {
		t.Errorf("PhaseError = %+v", pe)
	}
	if !strings.Contains(err.Error(), "--from prep") {
		t.Errorf("error must say how to resume: %v", err)
	}
	if after.Load() != 0 {
		t.Error("the workflow must stop after a failed phase")
	}
	// the hosts that succeeded recorded the phase; the failed ones did not
	for _, h := range hosts {
		rec, _ := ReadRecords(context.Background(), h, "init")
		_, done := rec["prep"]
		if want := h.HostName == "cp1" || h.HostName == "w2"; done != want {
			t.Errorf("%s: recorded=%v, want %v", h.HostName, done, want)
		}
	}
}

func TestConcurrencyBound(t *testing.T) {
	var out bytes.Buffer
	var hosts []*sshtest.Fake
	for i := range 12 {
		hosts = append(hosts, sshtest.NewFake(fmt.Sprintf("h%d", i)))
	}
	r := newRun(t, &out, hosts...)
	r.Concurrency = 3
	var cur, peak atomic.Int32
	w := Workflow{Name: "init", Phases: []Phase{{Name: "work", RunHost: func(context.Context, *Run, *Target) error {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // hold the slot so overlapping hosts are observable
		cur.Add(-1)
		return nil
	}}}}
	steps, _ := w.Select(Selection{})
	if err := Execute(context.Background(), r, steps); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want exactly the bound 3", p)
	}
}

func TestUnreachableSeenThroughPhaseError(t *testing.T) {
	var out bytes.Buffer
	r := newRun(t, &out, sshtest.NewFake("cp1"))
	w := Workflow{Name: "init", Phases: []Phase{{Name: "connect", RunHost: func(context.Context, *Run, *Target) error {
		return &ssh.UnreachableError{Host: "cp1", Address: "10.0.0.1:22", Err: errors.New("connection refused")}
	}}}}
	steps, _ := w.Select(Selection{})
	err := Execute(context.Background(), r, steps)
	var ue *ssh.UnreachableError
	if !errors.As(err, &ue) || ue.Host != "cp1" {
		t.Fatalf("want UnreachableError through PhaseError, got %v", err)
	}
}

func TestSkips(t *testing.T) {
	var out bytes.Buffer
	r := newRun(t, &out, sshtest.NewFake("cp1"), sshtest.NewFake("w1"))
	ran := false
	w := Workflow{Name: "init", Phases: []Phase{
		{Name: "quay", Skip: func(*Run) string { return "quay is disabled" }, Run: func(context.Context, *Run) error { ran = true; return nil }},
		{Name: "kata", RunHost: func(context.Context, *Run, *Target) error { return Skip("kata disabled") }},
		{Name: "etcd-only", Roles: []api.Role{"nothing"}, RunHost: func(context.Context, *Run, *Target) error { ran = true; return nil }},
	}}
	steps, _ := w.Select(Selection{})
	if err := Execute(context.Background(), r, steps); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Error("a skipped phase ran")
	}
	evs := events(t, &out)
	if s := evs[len(evs)-1].Summary; s.Skipped != 3 || s.OK != 0 {
		t.Errorf("summary %+v, want 3 skipped", s)
	}
}

func TestDryRunRecordsInsteadOfChanging(t *testing.T) {
	var out bytes.Buffer
	real := sshtest.NewFake("cp1")
	real.SetFile("/etc/app.conf", []byte("a=1\nb=2\n"), 0o644)
	real.OnCommand("cat /proc/version", ssh.Result{Stdout: []byte("Linux 6.1")}, nil)
	r := &Run{Workflow: "init", Reporter: report.New(&out, report.JSON), Concurrency: 2, DryRun: true}
	r.Targets = []*Target{{Spec: api.Host{Name: "cp1"}, Host: ssh.NewRecorder("cp1", real, r.Plan)}}
	var kernel string
	w := Workflow{Name: "init", Phases: []Phase{{Name: "configure", RunHost: func(ctx context.Context, r *Run, t *Target) error {
		res, err := t.Host.Run(ctx, "cat /proc/version", ssh.ReadOnly())
		if err != nil {
			return err
		}
		kernel = string(res.Stdout)
		if _, err := t.Host.Upload(ctx, ssh.Bytes("a=1\nb=3\n"), "/etc/app.conf", 0o644); err != nil {
			return err
		}
		_, err = t.Host.Run(ctx, "systemctl restart app")
		return err
	}}}}
	steps, _ := w.Select(Selection{})
	if err := Execute(context.Background(), r, steps); err != nil {
		t.Fatal(err)
	}
	if kernel != "Linux 6.1" {
		t.Errorf("read-only command must reach the real host, got %q", kernel)
	}
	if got := real.Commands(); len(got) != 1 || got[0] != "cat /proc/version" {
		t.Errorf("real host ran %v, want only the read-only command", got)
	}
	if data, _, _ := real.File("/etc/app.conf"); string(data) != "a=1\nb=2\n" {
		t.Errorf("dry run changed the file: %q", data)
	}
	if files := real.Files(); len(files) != 1 {
		t.Errorf("dry run wrote files (phase record?): %v", files)
	}
	var plans []string
	hostStatusPlanned := false
	for _, e := range events(t, &out) {
		switch {
		case e.Status == report.Planned && e.Message == "" && e.DurationMS != nil:
			hostStatusPlanned = e.Host == "cp1" // the phase's own line on the host: planned, not changed
		case e.Status == report.Planned:
			if e.Phase != "configure" || e.Host != "cp1" {
				t.Errorf("planned event not attributed: %+v", e)
			}
			plans = append(plans, e.Message)
		case e.Status == report.Changed:
			t.Errorf("a dry run reported a change: %+v", e)
		}
	}
	if !hostStatusPlanned {
		t.Error("the host's status in a dry run must be planned")
	}
	if len(plans) != 2 || !strings.Contains(plans[0], "would write: /etc/app.conf") || !strings.Contains(plans[0], "-b=2\n+b=3") ||
		plans[1] != "would run: systemctl restart app" {
		t.Errorf("plans = %q", plans)
	}
}

func TestTextReport(t *testing.T) {
	var out bytes.Buffer
	r := newRun(t, &out, sshtest.NewFake("cp1"))
	r.Reporter = report.New(&out, report.Text)
	w := Workflow{Name: "init", Phases: []Phase{
		{Name: "a", Run: func(context.Context, *Run) error { return nil }},
		{Name: "b", RunHost: func(_ context.Context, r *Run, t *Target) error { r.Changed(t.Spec.Name, "x"); return nil }},
	}}
	steps, _ := w.Select(Selection{})
	if err := Execute(context.Background(), r, steps); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"ok       a ", "changed  b                                cp1", "init: 2 phases: 2 ok, 0 skipped, 0 failed; 1 changed in "} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}

func containsStatus(list []report.Status, s report.Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// uploadCounter counts a host's file writes.
type uploadCounter struct {
	ssh.Host
	uploads atomic.Int32
}

func (u *uploadCounter) Upload(ctx context.Context, c ssh.Content, dst string, mode fs.FileMode, opts ...ssh.FileOption) (bool, error) {
	u.uploads.Add(1)
	return u.Host.Upload(ctx, c, dst, mode, opts...)
}

// A host's record is written once per run, whatever the number of phases, keeps what earlier runs recorded,
// and is written when the operator stops the run too, with the phases completed until then.
func TestRecordWrittenOncePerRun(t *testing.T) {
	var out bytes.Buffer
	cp := sshtest.NewFake("cp1")
	cp.SetFile(RecordDir+"/init.json", []byte(`{"earlier": {"completedAt": "2026-11-29T10:00:00Z", "durationMs": 1}}`), 0o644)
	counter := &uploadCounter{Host: cp}
	r := newRun(t, &out, cp)
	r.Targets[0].Host = counter
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := Workflow{Name: "init", Phases: []Phase{
		{Name: "one", RunHost: func(context.Context, *Run, *Target) error { return nil }},
		{Name: "two", RunHost: func(context.Context, *Run, *Target) error { return nil }},
		{Name: "three", RunHost: func(context.Context, *Run, *Target) error { cancel(); return context.Canceled }},
		{Name: "four", RunHost: func(context.Context, *Run, *Target) error { return nil }},
	}}
	steps, _ := w.Select(Selection{})
	if err := Execute(ctx, r, steps); err == nil {
		t.Fatal("the stopped run must fail")
	}
	if n := counter.uploads.Load(); n != 1 {
		t.Errorf("the record was written %d times, want once", n)
	}
	rec, err := ReadRecords(context.Background(), cp, "init")
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(rec))
	if want := []string{"earlier", "one", "two"}; !slices.Equal(got, want) {
		t.Errorf("record %q, want %q", got, want)
	}
}

// A command without --from is told to run again, not where to resume.
func TestPhaseErrorWithoutResume(t *testing.T) {
	e := &PhaseError{Workflow: "certs renew 'all'", NoResume: true, Phase: "renew", Err: errors.New("boom")}
	if got := e.Error(); !strings.HasSuffix(got, "run it again (phases are idempotent): privcloud certs renew 'all'") || strings.Contains(got, "--from") {
		t.Errorf("%q", got)
	}
}
