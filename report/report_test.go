package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/internal/golden"
	"github.com/privcloud/privcloud/report"
)

// clock is a fixed, ticking clock: each event is stamped one millisecond after the one before.
func clock() func() time.Time {
	t := time.Date(2026, 11, 22, 5, 11, 32, 93_700_000, time.FixedZone("CET", 3600))
	return func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
}

// stream is one of each kind of event a workflow emits, in the order a run would, closed the way a failed
// command closes its JSON stream.
func stream() []report.Event {
	ms := func(v float64) *float64 { return &v }
	return []report.Event{
		{Workflow: "init", Phase: "etcd", Host: "cp1", Status: report.Started},
		{Workflow: "init", Phase: "etcd", Host: "cp1", Status: report.OK, DurationMS: ms(812.4)},
		{Workflow: "init", Phase: "node/kubelet", Host: "worker1", Status: report.Changed, Message: "/etc/systemd/system/kubelet.service"},
		{Workflow: "init", Phase: "addons/quay", Status: report.Skipped, Message: "spec.addons.quay.enabled is false in cluster.yaml"},
		{Workflow: "init", Phase: "control-plane/apiserver", Host: "cp1", Status: report.Failed, DurationMS: ms(180000),
			Error: "kube-apiserver not healthy after 3m0s; its journal ends:\nE1122 05:11:32 run.go:72] bind: address already in use"},
		{Workflow: "init", Phase: "preflight/check", Host: "worker2", Status: report.Warning, Message: "clock: clock is 2.5s off: run NTP"},
		{Workflow: "init", Phase: "host-prep", Host: "worker2", Status: report.Planned,
			Message: "would write: /etc/sysctl.d/99-privcloud.conf (0644, 168 bytes, sha256 0eafac7c2bd6)\n-net.ipv4.ip_forward = 0\n+net.ipv4.ip_forward = 1"},
		{Workflow: "init", Status: report.Done, DurationMS: ms(9120.5),
			Summary: &report.Summary{Phases: 28, OK: 25, Skipped: 2, Failed: 1, Changed: 12}},
		{Workflow: "init", Status: report.Done, DurationMS: ms(0.4),
			Summary: &report.Summary{Phases: 1, OK: 1, Changed: 3, DryRun: true}},
		{Status: report.Failed, Error: "phase control-plane/apiserver failed on 1 of 1 hosts", ExitCode: 5},
	}
}

func emit(format report.Format, verbose bool, events []report.Event) string {
	var out bytes.Buffer
	r := report.New(&out, format).WithClock(clock())
	r.Verbose = verbose
	for _, e := range events {
		r.Emit(e)
	}
	return out.String()
}

// The NDJSON stream is what CI parses: its exact bytes are pinned, and so is the version leading each line.
func TestEventStream(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		got := emit(report.JSON, false, stream())
		golden.Assert(t, got)
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != len(stream()) {
			t.Fatalf("%d lines for %d events", len(lines), len(stream()))
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, fmt.Sprintf(`{"v":%d,"time":"`, report.EventVersion)) {
				t.Errorf("a line does not start with the version: %s", l)
			}
			var e report.Event
			if err := json.Unmarshal([]byte(l), &e); err != nil || e.Version != 1 || e.Time.Location() != time.UTC {
				t.Errorf("line does not read back as a v1 event in UTC (%v): %s", err, l)
			}
		}
	})
	t.Run("text", func(t *testing.T) { golden.Assert(t, emit(report.Text, false, stream())) })
	t.Run("text-verbose", func(t *testing.T) { golden.Assert(t, emit(report.Text, true, stream())) })
}

// The version is the reporter's to set: an event built with another value is still stamped with the current one.
func TestEmitSetsTheVersion(t *testing.T) {
	got := emit(report.JSON, false, []report.Event{{Version: 7, Status: report.OK}})
	if !strings.HasPrefix(got, `{"v":1,`) {
		t.Errorf("got %s", got)
	}
	// an event's own time is kept, in its own zone (events from elsewhere are forwarded as they were)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got := emit(report.JSON, false, []report.Event{{Time: at, Status: report.OK}}); !strings.Contains(got, `"time":"2026-01-02T03:04:05Z"`) {
		t.Errorf("the event's own time was replaced: %s", got)
	}
}

// Secrets that reach a message or an error (a key in a diff, a token in a command's stderr) never reach the
// output, in either format, verbose or not.
func TestSecretsAreRedacted(t *testing.T) {
	key := "-----BEGIN EC PRIVATE KEY-----\nTUhjQ0FRRUVJR2wwLVNFQ1JFVA==\n-----END EC PRIVATE KEY-----"
	events := []report.Event{
		{Workflow: "init", Phase: "certs/distribute", Host: "cp1", Status: report.Planned,
			Message: "would write: /etc/kubernetes/admin.conf\n-    client-key-data: T0xELUtFWS1EQVRB\n+    client-key-data: TkVXLUtFWS1EQVRB"},
		{Workflow: "init", Phase: "etcd", Host: "cp1", Status: report.Failed, Error: "etcdctl: exit 1: " + key},
		{Workflow: "init", Phase: "addons/quay", Status: report.Warning, Message: `sudo said: password=hunter2 {"secret": "s3cr3t-value"}`},
		{Status: report.Failed, Error: "join token: abcdef.0123456789abcdef", ExitCode: 5},
	}
	leaks := []string{"T0xELUtFWS1EQVRB", "TkVXLUtFWS1EQVRB", "TUhjQ0FRRUVJR2wwLVNFQ1JFVA", "hunter2", "s3cr3t-value", "0123456789abcdef", "BEGIN EC PRIVATE KEY"}
	for _, c := range []struct {
		format  report.Format
		verbose bool
	}{{report.JSON, false}, {report.Text, false}, {report.Text, true}} {
		got := emit(c.format, c.verbose, events)
		for _, l := range leaks {
			if strings.Contains(got, l) {
				t.Errorf("%s (verbose %v) output holds %q:\n%s", c.format, c.verbose, l, got)
			}
		}
		// what was redacted is still said to be there, and the rest of the message survives
		for _, kept := range []string{"[redacted private key]", "client-key-data: [redacted]", "/etc/kubernetes/admin.conf", "join token"} {
			if c.format == report.Text && !c.verbose && kept == "client-key-data: [redacted]" {
				continue // the diff is shown with -v only
			}
			if !strings.Contains(got, kept) {
				t.Errorf("%s (verbose %v) output lacks %q:\n%s", c.format, c.verbose, kept, got)
			}
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, c := range []struct {
		in   string
		want report.Format
		err  bool
	}{{"text", report.Text, false}, {"table", report.Text, false}, {"json", report.JSON, false}, {"yaml", "", true}, {"", "", true}} {
		got, err := report.ParseFormat(c.in)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseFormat(%q) = %q, %v", c.in, got, err)
		}
	}
}

// Per-host goroutines share one reporter: every line must come out whole.
func TestConcurrentEmitsDoNotInterleave(t *testing.T) {
	var out bytes.Buffer
	r := report.New(&out, report.JSON)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				r.Emit(report.Event{Phase: "p", Host: fmt.Sprintf("h%d", i), Status: report.Changed, Message: strings.Repeat("x", j*40)})
			}
		}()
	}
	for range 8 {
		<-done
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("a line is not one JSON object: %.80s", l)
		}
	}
}
