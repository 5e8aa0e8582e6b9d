//go:build integration

package ssh

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/internal/testsshd"
)

// shellPID is the process that ran the command's subshell: the long-lived shell, or a session's own.
func shellPID(t *testing.T, c *Client) string {
	t.Helper()
	res, err := c.Run(context.Background(), "echo $PPID")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(res.Stdout))
}

func TestCommandsShareOneShellAndNothingElse(t *testing.T) {
	e, c := rootClient(t)
	ctx := context.Background()

	first := shellPID(t, c)
	if _, err := c.Run(ctx, "cd /tmp; export PRIVCLOUD_LEAK=1; umask 077; trap 'echo trapped' EXIT; set -- a b"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(ctx, `printf '%s|%s|%s|%s' "$(pwd)" "${PRIVCLOUD_LEAK-unset}" "$(umask)" "$#"`)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if want := home + "|unset|0022|0"; string(res.Stdout) != want {
		t.Errorf("a command saw another's state: %q, want %q", res.Stdout, want)
	}
	if again := shellPID(t, c); again != first {
		t.Errorf("commands ran in shells %s and %s: the long-lived shell was not reused", first, again)
	}

	// output of any shape comes back whole: no final newline, NUL bytes, megabytes, stderr apart
	res, err = c.Run(ctx, `printf 'no newline'; printf 'err' >&2`)
	if err != nil || string(res.Stdout) != "no newline" || string(res.Stderr) != "err" {
		t.Errorf("no final newline: %q %q %v", res.Stdout, res.Stderr, err)
	}
	path, sum := randomFile(t, e.dir, 3<<20+17)
	data, err := c.ReadFile(ctx, path)
	if err != nil || fmt.Sprintf("%x", sha256.Sum256(data)) != sum {
		t.Errorf("3 MiB of random bytes came back as %d bytes (%v)", len(data), err)
	}
	// exit codes, syntax errors, exit and exec end the command only
	for cmd, code := range map[string]int{"exit 7": 7, "false": 1, "if then fi": 2, "exec sh -c 'exit 9'": 9, "kill -TERM $$": 143} {
		_, err := c.Run(ctx, cmd)
		var ee *ExecError
		if !errors.As(err, &ee) || ee.ExitCode != code {
			t.Errorf("%q: want exit %d, got %v", cmd, code, err)
		}
	}
	if again := shellPID(t, c); again != first {
		t.Errorf("a failing command ended the long-lived shell (%s, now %s)", first, again)
	}
}

func TestShellGoneBetweenCommandsIsReplaced(t *testing.T) {
	_, c := rootClient(t)
	ctx := context.Background()

	first := shellPID(t, c)
	// killed from outside (a session of its own: input makes it take one)
	if _, err := c.Run(ctx, "kill -KILL "+first, WithStdin(strings.NewReader(""))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		sh := <-c.shells.idle
		gone := sh.exited()
		c.shells.idle <- sh
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed shell's session never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next := shellPID(t, c); next == first || next == "" {
		t.Errorf("after its shell was killed, a command ran in %q (the dead shell was %s)", next, first)
	}
	// a command that kills its own shell fails as a lost connection would: its outcome is unknown
	_, err := c.Run(ctx, "kill -KILL $PPID")
	if !errors.Is(err, ErrConnectionLost) {
		t.Errorf("a command whose shell died: want ErrConnectionLost, got %v", err)
	}
	if _, err := c.Run(ctx, "true"); err != nil {
		t.Errorf("the command after it: %v", err)
	}
}

func TestCancelledCommandEndsItsShellOnly(t *testing.T) {
	_, c := rootClient(t)
	first := shellPID(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Run(ctx, "sleep 30"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if next := shellPID(t, c); next == first {
		t.Errorf("the cancelled command's shell %s was used again", first)
	}
	if n := len(c.sessions); n > maxShells {
		t.Errorf("%d session slots held after the cancel, want at most %d (the shells)", n, maxShells)
	}
}

func TestSudoWithoutPasswordUsesLongLivedShell(t *testing.T) {
	e, s := userServer(t, testsshd.Options{Password: "Pa55-word", SudoNoPassword: true})
	c := connect(t, e.dialer(false), e.host(s, "privtest"))
	res, err := c.Run(context.Background(), "id -un")
	if err != nil || string(res.Stdout) != "root\n" {
		t.Fatalf("sudo shell: %q %v", res.Stdout, err)
	}
	if a, b := shellPID(t, c), shellPID(t, c); a != b {
		t.Errorf("commands ran in shells %s and %s: the long-lived shell was not reused", a, b)
	}
}

// BenchmarkCommands compares a command in the long-lived shell with the same command in a session of its own
// (input makes it take one), against a real sshd: go test -tags integration -run - -bench Commands ./ssh
func BenchmarkCommands(b *testing.B) {
	_, c := rootClient(b)
	ctx := context.Background()
	for name, opts := range map[string][]RunOption{"shell": nil, "session": {WithStdin(strings.NewReader(""))}} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Run(ctx, "true", opts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A user whose sudo wants a password nobody gave: the shell cannot start, commands take sessions and fail
// with sudo's own error, and no further shell is tried on the connection.
func TestShellRefusedFallsBackToSessions(t *testing.T) {
	e, s := userServer(t, testsshd.Options{Password: "Pa55-word"})
	c := connect(t, e.dialer(false), e.host(s, "privtest"))
	for range 2 {
		_, err := c.Run(context.Background(), "id -un")
		var ee *ExecError
		if !errors.As(err, &ee) || !strings.Contains(ee.Stderr, "password") {
			t.Errorf("sudo without its password: want sudo's refusal, got %v", err)
		}
	}
	if c.shells.refusedOn != c.client() || c.shells.count != 0 {
		t.Errorf("after a refused shell: refused on this connection %v, %d shells", c.shells.refusedOn == c.client(), c.shells.count)
	}
}
