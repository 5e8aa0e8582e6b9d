package report

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// live keeps one status line under the output on a terminal: which phases are running, on which hosts, and
// for how long, so a long phase (a bundle upload, the wait for Ready nodes) is never silent. It is redrawn
// every second while something runs and erased before every other line.
type live struct {
	running map[string]map[string]time.Time // phase -> host ("" for cluster-wide) -> started
	shown   bool
	timer   *time.Timer
}

const clearLine = "\r\033[K"

// track follows one event; the caller holds the reporter's lock.
func (l *live) track(e Event) {
	switch e.Status {
	case Started:
		if l.running == nil {
			l.running = map[string]map[string]time.Time{}
		}
		if l.running[e.Phase] == nil {
			l.running[e.Phase] = map[string]time.Time{}
		}
		l.running[e.Phase][e.Host] = e.Time
	case OK, Changed, Skipped, Failed:
		delete(l.running[e.Phase], e.Host)
		if len(l.running[e.Phase]) == 0 {
			delete(l.running, e.Phase)
		}
	case Done:
		l.running = nil
	}
}

// line renders the status line at now.
func (l *live) line(now time.Time) string {
	phases := make([]string, 0, len(l.running))
	for p := range l.running {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	var parts []string
	for _, p := range phases {
		var hosts []string
		first := now
		for h, at := range l.running[p] {
			if h != "" {
				hosts = append(hosts, h)
			}
			if at.Before(first) {
				first = at
			}
		}
		sort.Strings(hosts)
		part := p
		if len(hosts) > 0 {
			if len(hosts) > 6 {
				hosts = append(hosts[:6], fmt.Sprintf("+%d", len(hosts)-6))
			}
			part += " on " + strings.Join(hosts, " ")
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", part, now.Sub(first).Round(time.Second)))
	}
	s := "running: " + strings.Join(parts, "; ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// liveLine draws the status line after the other output of an event and keeps it fresh; the caller holds
// the reporter's lock.
func (r *Reporter) liveLine() {
	l := &r.live
	if len(l.running) == 0 {
		if l.timer != nil {
			l.timer.Stop()
			l.timer = nil
		}
		return
	}
	fmt.Fprint(r.w, clearLine+l.line(r.now()))
	l.shown = true
	if l.timer == nil {
		l.timer = time.AfterFunc(time.Second, r.refresh)
	}
}

// refresh redraws the status line once a second while something runs.
func (r *Reporter) refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live.timer = nil
	if r.live.shown {
		fmt.Fprint(r.w, clearLine)
		r.live.shown = false
	}
	r.liveLine()
}

// eraseLive removes the status line before a regular line is written; the caller holds the reporter's lock.
func (r *Reporter) eraseLive() {
	if r.live.shown {
		fmt.Fprint(r.w, clearLine)
		r.live.shown = false
	}
}
