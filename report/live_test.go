package report

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLiveLineNamesRunningPhasesAndHosts(t *testing.T) {
	var out bytes.Buffer
	at := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	now := at
	r := New(&out, Text).WithClock(func() time.Time { return now })
	r.Live = true
	r.Emit(Event{Workflow: "init", Phase: "bundle", Host: "h1", Status: Started})
	r.Emit(Event{Workflow: "init", Phase: "bundle", Host: "h2", Status: Started})
	now = at.Add(7 * time.Second)
	r.Emit(Event{Workflow: "init", Phase: "bundle", Host: "h1", Status: Changed})
	if got := out.String(); !strings.Contains(got, clearLine+"running: bundle on h1 h2 (0s)") ||
		!strings.HasSuffix(got, clearLine+"running: bundle on h2 (7s)") {
		t.Fatalf("status lines:\n%q", got)
	}
	if !strings.Contains(out.String(), clearLine+"changed  bundle") {
		t.Errorf("the status line was not erased before a regular line:\n%q", out.String())
	}
	r.Emit(Event{Workflow: "init", Phase: "bundle", Host: "h2", Status: OK})
	r.Emit(Event{Workflow: "init", Status: Done, Summary: &Summary{Phases: 1, OK: 1}})
	if got := out.String(); strings.HasSuffix(got, ")") || !strings.HasSuffix(got, "0 changed\n") {
		t.Errorf("a status line outlived the run:\n%q", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live.timer != nil {
		t.Error("the refresh timer still runs after the run ended")
	}
}

func TestNoLiveLineUnlessAsked(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Text)
	r.Emit(Event{Workflow: "init", Phase: "bundle", Host: "h1", Status: Started})
	if strings.Contains(out.String(), "running:") || strings.Contains(out.String(), "\r") {
		t.Errorf("a status line without a terminal: %q", out.String())
	}
}
