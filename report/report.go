// Package report is the one place privcloud prints progress: a line per phase and host for people, or with
// -o json a stream of NDJSON events (one object per line) that CI pipelines parse.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/privcloud/privcloud/internal/secret"
)

// Status is what happened to a phase, on one host or as a whole.
type Status string

const (
	Started Status = "started"
	OK      Status = "ok"
	Changed Status = "changed"
	Skipped Status = "skipped"
	Failed  Status = "failed"
	// Warning is something worth knowing that does not stop the run.
	Warning Status = "warning"
	// Planned is an action a dry run would take.
	Planned Status = "planned"
	// Done closes a workflow; its Summary says what happened.
	Done Status = "done"
)

// EventVersion is the version of the NDJSON event format, carried by every event as "v". It changes only
// when a field is removed or changes meaning; new fields may appear within a version.
const EventVersion = 1

// Event is one line of the NDJSON stream.
type Event struct {
	// Version is set by Emit to EventVersion; it leads each line so consumers can check it first.
	Version    int       `json:"v"`
	Time       time.Time `json:"time"`
	Workflow   string    `json:"workflow,omitempty"`
	Phase      string    `json:"phase,omitempty"`
	Host       string    `json:"host,omitempty"`
	Status     Status    `json:"status"`
	DurationMS *float64  `json:"durationMs,omitempty"`
	Message    string    `json:"message,omitempty"`
	Error      string    `json:"error,omitempty"`
	Summary    *Summary  `json:"summary,omitempty"`
	// ExitCode closes a failed command's stream in JSON mode.
	ExitCode int `json:"exitCode,omitempty"`
}

// Summary counts the outcome of a workflow.
type Summary struct {
	Phases  int `json:"phases"`
	OK      int `json:"ok"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"`
	// Changed counts changes made, or in a dry run the changes that would be made.
	Changed int  `json:"changed"`
	DryRun  bool `json:"dryRun,omitempty"`
}

// Format selects the output style.
type Format string

const (
	Text Format = "text"
	JSON Format = "json"
)

// ParseFormat accepts "text" (or its synonym "table") and "json".
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Text, "table":
		return Text, nil
	case JSON:
		return JSON, nil
	}
	return "", fmt.Errorf("unknown output format %q: use text (or table) or json", s)
}

// Reporter writes events to one stream. It is safe for concurrent use by per-host goroutines.
type Reporter struct {
	mu     sync.Mutex
	w      io.Writer
	format Format
	now    func() time.Time
	// Live keeps a status line of the running phases and their hosts under the text output (terminals only).
	Live bool
	live live
	// Verbose shows started events and dry-run diffs in text mode.
	Verbose bool
}

// New returns a reporter writing format to w.
func New(w io.Writer, format Format) *Reporter {
	return &Reporter{w: w, format: format, now: time.Now}
}

// WithClock makes the reporter stamp events with now (for tests).
func (r *Reporter) WithClock(now func() time.Time) *Reporter {
	r.now = now
	return r
}

// Format returns the output format.
func (r *Reporter) Format() Format { return r.format }

// Emit writes one event.
func (r *Reporter) Emit(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Version = EventVersion
	if e.Time.IsZero() {
		e.Time = r.now().UTC()
	}
	// the last gate before any output: a key or token that reached a message or error goes no further
	e.Message, e.Error = secret.Redact(e.Message), secret.Redact(e.Error)
	if r.format == JSON {
		b, _ := json.Marshal(e)
		fmt.Fprintf(r.w, "%s\n", b)
		return
	}
	if r.Live {
		r.eraseLive()
	}
	if line := r.text(e); line != "" {
		fmt.Fprintln(r.w, line)
	}
	if r.Live {
		r.live.track(e)
		r.liveLine()
	}
}

// Duration converts d for Event.DurationMS.
func Duration(d time.Duration) *float64 {
	ms := float64(d.Microseconds()) / 1000
	return &ms
}

var textStatus = map[Status]string{
	OK: "ok", Changed: "changed", Skipped: "skip", Failed: "FAILED", Planned: "plan", Warning: "WARNING",
	Started: "...",
}

func (r *Reporter) text(e Event) string {
	switch e.Status {
	case Done:
		s := e.Summary
		changed := fmt.Sprintf("%d changed", s.Changed)
		if s.DryRun {
			changed = fmt.Sprintf("dry run: %d changes planned, none made", s.Changed)
		}
		line := fmt.Sprintf("%s: %s: %d ok, %d skipped, %d failed; %s", e.Workflow, plural(s.Phases, "phase"), s.OK, s.Skipped, s.Failed, changed)
		if e.DurationMS != nil {
			line += " in " + formatMS(*e.DurationMS)
		}
		return line
	case Started:
		if !r.Verbose {
			return ""
		}
	}
	host := e.Host
	if host == "" {
		host = "-"
	}
	line := fmt.Sprintf("%-8s %-32s %-14s", textStatus[e.Status], e.Phase, host)
	if e.DurationMS != nil {
		line += " " + formatMS(*e.DurationMS)
	}
	msg := e.Message
	if e.Status == Planned && !r.Verbose {
		msg, _, _ = strings.Cut(msg, "\n") // diffs only with -v
	}
	if msg != "" {
		line += "  " + msg
	}
	if e.Error != "" {
		line += "\n         " + strings.ReplaceAll(e.Error, "\n", "\n         ")
	}
	return strings.TrimRight(line, " ")
}

func formatMS(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
