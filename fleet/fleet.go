// Package fleet runs one command on many hosts at once: the operator's fan-out tool behind `privcloud exec`.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/ssh"
)

// Result is one host's outcome.
type Result struct {
	Host        string  `json:"host"`
	ExitCode    int     `json:"exitCode"`
	Stdout      string  `json:"stdout"`
	Stderr      string  `json:"stderr"`
	DurationMS  float64 `json:"durationMs"`
	Unreachable bool    `json:"unreachable,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// OK reports whether the command ran and exited 0.
func (r Result) OK() bool { return !r.Unreachable && r.Error == "" && r.ExitCode == 0 }

// Error summarizes the hosts where the command did not succeed.
type Error struct {
	Failed, Unreachable []string
}

func (e *Error) Error() string {
	var parts []string
	if len(e.Unreachable) > 0 {
		parts = append(parts, fmt.Sprintf("%d unreachable (%s)", len(e.Unreachable), strings.Join(e.Unreachable, ", ")))
	}
	if len(e.Failed) > 0 {
		parts = append(parts, fmt.Sprintf("%d failed (%s)", len(e.Failed), strings.Join(e.Failed, ", ")))
	}
	return "command did not succeed everywhere: " + strings.Join(parts, "; ")
}

// Command turns exec's arguments into a remote command: one argument is a shell command line as written;
// several are a program and its arguments, each quoted so the remote shell passes them unchanged.
func Command(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = ssh.ShellQuote(a)
	}
	return strings.Join(quoted, " ")
}

// Select picks hosts by name and by role; with neither, every host. Unknown names and roles are errors.
func Select(hosts []api.Host, names, roles []string) ([]api.Host, error) {
	byName := map[string]bool{}
	for _, h := range hosts {
		byName[h.Name] = true
	}
	for _, n := range names {
		if !byName[n] {
			return nil, fmt.Errorf("--hosts: no host named %q in cluster.yaml", n)
		}
	}
	for _, r := range roles {
		if !isRole(api.Role(r)) {
			return nil, fmt.Errorf("--role: unknown role %q: use control-plane, etcd or worker", r)
		}
	}
	var out []api.Host
	for _, h := range hosts {
		if (len(names) == 0 || contains(names, h.Name)) && (len(roles) == 0 || hasAnyRole(h, roles)) {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no host matches --hosts and --role")
	}
	return out, nil
}

// Run connects to each host and runs cmd there, at most concurrency hosts at a time. Each host connects and
// runs on its own, so a fast host is done without waiting for slow ones; done is called as each finishes.
// Results come back in the order of hosts.
func Run(ctx context.Context, d *ssh.Dialer, hosts []api.Host, cmd string, concurrency int, done func(Result)) ([]Result, error) {
	results := make([]Result, len(hosts))
	parallel.ForEach(ctx, len(hosts), concurrency, func(i int) error {
		start := time.Now()
		r := Result{Host: hosts[i].Name}
		c, err := d.Connect(ctx, hosts[i])
		if err != nil {
			r.Unreachable, r.Error = true, err.Error()
		} else {
			res, rerr := c.Run(ctx, cmd)
			c.Close()
			r.Stdout, r.Stderr, r.ExitCode = string(res.Stdout), string(res.Stderr), res.ExitCode
			var ee *ssh.ExecError
			if rerr != nil && !errors.As(rerr, &ee) {
				r.Error = rerr.Error()
			}
		}
		r.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		results[i] = r
		if done != nil {
			done(r)
		}
		return nil
	})
	e := &Error{}
	for _, r := range results {
		switch {
		case r.Unreachable:
			e.Unreachable = append(e.Unreachable, r.Host)
		case !r.OK():
			e.Failed = append(e.Failed, r.Host)
		}
	}
	sort.Strings(e.Unreachable)
	sort.Strings(e.Failed)
	if len(e.Failed)+len(e.Unreachable) > 0 {
		return results, e
	}
	return results, nil
}

func isRole(r api.Role) bool {
	for _, k := range api.Roles {
		if k == r {
			return true
		}
	}
	return false
}

func hasAnyRole(h api.Host, roles []string) bool {
	for _, r := range roles {
		if h.HasRole(api.Role(r)) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
