// Package hostlock keeps two privcloud runs (two CI jobs, an operator and CI) from working on one host at once.
//
// The lock is flock(2) on a file in /run, held by a shell on the host that lives exactly as long as the
// privcloud run's SSH connection: the shell waits on its standard input, which ends when the run releases the
// lock, exits or dies (the connection closes). A reboot releases it too (/run is a tmpfs). The holder's
// description sits next to the lock, so a refused run says who holds it. A holder whose privcloud process is
// gone while its connection lingers on the host (a link cut, a crash of the machine's network) is taken over
// when the new run comes from the same machine and can see that process is dead.
package hostlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/privcloud/privcloud/internal/exitclass"
	"github.com/privcloud/privcloud/ssh"
)

// Path is the lock file on every host; Path+".owner" describes its holder.
const Path = "/run/lock/privcloud.lock"

// exitHeld is the holder script's exit code when another run holds the lock.
const exitHeld = 75

// holderScript takes the lock without waiting, describes its holder and keeps the lock until its standard
// input ends. cat runs without the lock's descriptor, so ending the shell alone releases the lock.
const holderScript = `set -u
command -v flock >/dev/null || { echo "flock (util-linux) is not installed: privcloud needs it to lock the host" >&2; exit 69; }
lock=$2
mkdir -p "$(dirname "$lock")"
exec 9>>"$lock"
if ! flock -n 9; then exec 9>&-; cat "$lock.owner" 2>/dev/null; exit 75; fi
{ printf '%s\n' "$1"; echo "$$"; } > "$lock.owner.tmp" && mv -f "$lock.owner.tmp" "$lock.owner"
cat >/dev/null 9>&-
rm -f "$lock.owner"`

// Owner describes a run that holds a host's lock.
type Owner struct {
	Command string    `json:"command"`
	User    string    `json:"user"`
	Machine string    `json:"machine"`   // host name of the machine privcloud runs on
	Boot    string    `json:"machineId"` // /etc/machine-id plus boot id: the same machine, the same boot
	PID     int       `json:"pid"`
	Start   string    `json:"start"` // the process's start time in clock ticks since boot, against PID reuse
	Since   time.Time `json:"since"`
	Run     string    `json:"run"` // unique per run: how a run recognises its own lock
}

func (o Owner) String() string {
	return fmt.Sprintf("'privcloud %s' by %s on %s (pid %d), since %s", o.Command, o.User, o.Machine, o.PID, o.Since.Format(time.RFC3339))
}

// HeldError is a host whose lock another live run holds.
type HeldError struct {
	Host   string
	Holder string // the holder's description, as the host has it
	Path   string
}

// ExitClass says the command line exits as for a held lock.
func (e *HeldError) ExitClass() exitclass.Class { return exitclass.Locked }

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is locked by another privcloud run: %s. Wait for it to finish; if it is gone (its machine crashed), "+
		"the lock goes when %s drops that run's SSH connection, or at once by ending the process named on the last line of %s.owner there",
		e.Host, e.Holder, e.Host, e.Path)
}

// Self describes this process as the holder of the locks of one run of command.
func Self(command string) Owner {
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = strconv.Itoa(os.Getuid())
	}
	return Owner{Command: command, User: user, Machine: host, Boot: bootID(), PID: os.Getpid(), Start: processStart(os.Getpid()),
		Since: time.Now().UTC().Truncate(time.Second), Run: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())}
}

// Lock is a held host lock.
type Lock struct {
	stdin *io.PipeWriter
	done  chan error
	once  sync.Once
}

// Acquire takes h's lock for owner, taking it over from a dead run of this machine. It returns a *HeldError
// when a live run holds it.
func Acquire(ctx context.Context, h ssh.Host, owner Owner) (*Lock, error) {
	return AcquireAt(ctx, h, owner, Path)
}

// AcquireAt is Acquire with the lock file at path (tests keep theirs off the machine's /run).
func AcquireAt(ctx context.Context, h ssh.Host, owner Owner, path string) (*Lock, error) {
	desc, err := json.Marshal(owner)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		l, holder, err := try(ctx, h, path, string(desc), owner.Run)
		if err != nil || l != nil {
			return l, err
		}
		prev, remotePID, ok := parseHolder(holder)
		if attempt == 0 && ok && prev.Boot == owner.Boot && !alive(prev.PID, prev.Start) {
			// the run that holds it died on this very machine: its shell on the host only waits for a dead connection
			if _, err := h.Run(ctx, fmt.Sprintf("kill -KILL %d 2>/dev/null; true", remotePID)); err != nil {
				return nil, err
			}
			continue
		}
		desc := strings.TrimSpace(holder)
		if ok {
			desc = prev.String()
		}
		if desc == "" {
			desc = "a run that left no description"
		}
		return nil, &HeldError{Host: h.Name(), Holder: desc, Path: path}
	}
}

// try starts the holder and waits until the owner file names this run (held) or the holder exits (refused,
// with the current holder's description).
func try(ctx context.Context, h ssh.Host, path, desc, run string) (*Lock, string, error) {
	r, w := io.Pipe()
	l := &Lock{stdin: w, done: make(chan error, 1)}
	var res ssh.Result
	go func() {
		var err error
		// the lock lasts the whole run: no command timeout, and not the phase's context either
		res, err = h.Run(context.WithoutCancel(ctx), "sh -c "+ssh.ShellQuote(holderScript)+" privcloud-lock "+ssh.ShellQuote(desc)+" "+ssh.ShellQuote(path),
			ssh.WithStdin(r), ssh.Untimed())
		l.done <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-l.done:
			var ee *ssh.ExecError
			if errors.As(err, &ee) && ee.ExitCode == exitHeld {
				return nil, string(res.Stdout), nil
			}
			if err == nil {
				err = errors.New("the lock holder ended at once")
			}
			return nil, "", fmt.Errorf("lock %s: %w", path, err)
		case <-ctx.Done():
			w.Close()
			return nil, "", ctx.Err()
		case <-tick.C:
			data, err := h.ReadFile(ctx, path+".owner")
			if err == nil && strings.Contains(string(data), `"run":"`+run+`"`) {
				return l, "", nil
			}
		}
	}
}

// Release gives the lock back and waits (briefly) for the host to have done so.
func (l *Lock) Release() {
	l.once.Do(func() {
		l.stdin.Close()
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// parseHolder reads an owner file: the owner's JSON, then the PID of the shell holding the lock on the host.
func parseHolder(s string) (Owner, int, bool) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != 2 {
		return Owner{}, 0, false
	}
	var o Owner
	pid, err := strconv.Atoi(strings.TrimSpace(lines[1]))
	if json.Unmarshal([]byte(lines[0]), &o) != nil || err != nil || pid <= 1 {
		return Owner{}, 0, false
	}
	return o, pid, true
}

// alive reports whether pid is still the process that started at start.
func alive(pid int, start string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return processStart(pid) == start
}

// processStart is field 22 of /proc/PID/stat: the start time in clock ticks since boot.
func processStart(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// the command name (field 2) may hold spaces and parentheses: count from the last ')'
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// bootID names this machine and boot: a PID means something only within them.
func bootID() string {
	machine, _ := os.ReadFile("/etc/machine-id")
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(machine)) + "/" + strings.TrimSpace(string(boot))
}
