// Package fleet runs one command on many hosts at once: the operator's fan-out tool behind `privcloud exec`.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/exitclass"
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

// ExitClass is Unreachable when any host could not be reached: the command may not have run at all.
func (e *Error) ExitClass() exitclass.Class {
	if len(e.Unreachable) > 0 {
		return exitclass.Unreachable
	}
	return exitclass.PhaseFailed
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
	return each(ctx, d, hosts, concurrency, done, func(c *ssh.Client, r *Result) error {
		res, err := c.Run(ctx, cmd)
		r.Stdout, r.Stderr, r.ExitCode = string(res.Stdout), string(res.Stderr), res.ExitCode
		var ee *ssh.ExecError
		if errors.As(err, &ee) {
			return nil // a command's failure is its exit code, not an error of the fan-out
		}
		return err
	})
}

// each connects to every host and applies work to it, collecting a Result per host.
func each(ctx context.Context, d *ssh.Dialer, hosts []api.Host, concurrency int, done func(Result), work func(*ssh.Client, *Result) error) ([]Result, error) {
	results := make([]Result, len(hosts))
	d.OnEach(ctx, hosts, concurrency, func(i int, c *ssh.Client, err error) error {
		start := time.Now()
		r := Result{Host: hosts[i].Name}
		if err != nil {
			r.Unreachable, r.Error = true, err.Error()
		} else if err := work(c, &r); err != nil {
			r.Error = err.Error()
			// a host that drops the connection mid-command is as unreachable as one that never answered
			r.Unreachable = errors.Is(err, ssh.ErrConnectionLost)
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

// Copy uploads one local file to dst on each host, atomically and verified by sha256; hosts that already
// hold it unchanged are skipped. A result's Stdout says "changed" or "unchanged".
func Copy(ctx context.Context, d *ssh.Dialer, hosts []api.Host, src, dst string, mode fs.FileMode, concurrency int, done func(Result)) ([]Result, error) {
	file := &ssh.File{Path: src} // hashed once for every host
	return each(ctx, d, hosts, concurrency, done, func(c *ssh.Client, r *Result) error {
		changed, err := c.Upload(ctx, file, dst, mode)
		r.Stdout = "unchanged"
		if changed {
			r.Stdout = "changed"
		}
		return err
	})
}
