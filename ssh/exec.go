package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	xssh "golang.org/x/crypto/ssh"
)

// ErrConnectionLost is a connection that died while a command ran; the command's outcome is unknown.
var ErrConnectionLost = errors.New("SSH connection lost")

// maxOutput caps what one command's stdout or stderr keeps in memory; the rest is dropped and flagged.
const maxOutput = 32 << 20

// Run executes cmd in the remote shell. Hosts whose user is not root run it through sudo.
func (c *Client) Run(ctx context.Context, cmd string, opts ...RunOption) (Result, error) {
	o := Apply(opts)
	if o.Untimed {
		ctx = context.WithValue(ctx, untimedKey{}, true)
	}
	var stdout, stderr cappedBuffer
	err := c.run(ctx, cmd, o.Stdin, &stdout, &stderr)
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *ExecError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode
		ee.Stderr = string(res.Stderr)
	}
	return res, err
}

// run runs cmd with the given streams and waits for it, honouring ctx and the command timeout: in one of the
// connection's long-lived shells when it takes no input (see shell.go), else in a session of its own.
func (c *Client) run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if c.cmdTimeout > 0 && ctx.Value(untimedKey{}) == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cmdTimeout)
		defer cancel()
	}
	if stdin == nil {
		if sh := c.takeShell(ctx); sh != nil {
			if started, err := c.runShell(ctx, sh, cmd, stdout, stderr); started {
				return err
			}
		}
	}
	return c.runSession(ctx, cmd, stdin, stdout, stderr)
}

// runSession runs cmd in a session of its own. When ctx ends first, the remote command and everything it
// started are killed: OpenSSH refuses signal requests on root sessions, so the kill goes over a second
// session to the process group sshd made for the command.
func (c *Client) runSession(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	// before taking a session slot: finding out how sudo runs may take one itself
	full, stdin, err := c.privileged(ctx, cmd, stdin)
	if err != nil {
		return fmt.Errorf("%s: %q: %w", c.name, cmd, err)
	}
	if err := c.acquire(ctx); err != nil {
		return fmt.Errorf("%s: %q: %w", c.name, cmd, err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-c.sessions
		}
	}
	defer release()

	sess, err := openSession(ctx, c.client())
	if err != nil {
		return fmt.Errorf("%s: %w: %v", c.name, ErrConnectionLost, err)
	}
	defer sess.Close()
	sid := &sessionIDWriter{w: stderr}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, sid
	// sshd starts each command as a session leader: its pid is the id of the group to kill on cancel.
	if err := sess.Start(`printf 'privcloud-sid:%s\n' "$$" >&2; exec ` + full); err != nil {
		return fmt.Errorf("%s: start %q: %w: %v", c.name, cmd, ErrConnectionLost, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// a command cancelled right after its start may not have said its session id yet: without it, nothing
		// could end it, so it is waited for a little while the session is still open
		id := sid.waitID(done, 5*time.Second)
		sess.Close()
		release() // the kill needs a session slot of its own
		c.kill(id)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
		return fmt.Errorf("%s: %q: %w", c.name, cmd, ctx.Err())
	}
	var exit *xssh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.Signal() == "":
		return &ExecError{Host: c.name, Cmd: cmd, ExitCode: exit.ExitStatus()}
	case errors.As(err, &exit):
		return &ExecError{Host: c.name, Cmd: cmd, ExitCode: 128 + signalNumber(exit.Signal())}
	}
	return fmt.Errorf("%s: %q: %w: %v", c.name, cmd, ErrConnectionLost, err)
}

func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.sessions <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openSession opens a session on conn. A server that refuses the channel (OpenSSH's MaxSessions, counted
// until the previous sessions' processes are reaped, sudo's a little later) is asked again for a few seconds:
// the refusal is about that moment, not the connection.
func openSession(ctx context.Context, conn *xssh.Client) (*xssh.Session, error) {
	deadline := time.Now().Add(10 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		sess, err := conn.NewSession()
		var refused *xssh.OpenChannelError
		if err == nil || !errors.As(err, &refused) || time.Now().After(deadline) {
			return sess, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// untimedKey marks a command the command timeout does not apply to (see Untimed).
type untimedKey struct{}

// kill ends the process group of a cancelled command: TERM first, so scripts remove their temporary files
// (an upload's trap does), then KILL for whatever is still there a few seconds later.
func (c *Client) kill(sid string) {
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	script := fmt.Sprintf(`kill -TERM -- -%[1]s 2>/dev/null || pkill -TERM -s %[1]s
i=0; while [ $i -lt 30 ] && pgrep -s %[1]s >/dev/null 2>&1; do sleep 0.1; i=$((i+1)); done
kill -KILL -- -%[1]s 2>/dev/null || pkill -KILL -s %[1]s; true`, sid)
	_ = c.runSession(ctx, script, nil, io.Discard, io.Discard)
}

// sessionIDWriter passes stderr through, minus the first line the command wrapper prints: its session id.
type sessionIDWriter struct {
	w    io.Writer
	mu   sync.Mutex
	head []byte
	done bool
	id   string
}

func (s *sessionIDWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return s.w.Write(p)
	}
	s.head = append(s.head, p...)
	i := bytes.IndexByte(s.head, '\n')
	if i < 0 {
		s.mu.Unlock()
		return len(p), nil
	}
	s.done = true
	rest := s.head[i+1:]
	if id, ok := strings.CutPrefix(string(s.head[:i]), "privcloud-sid:"); ok {
		s.id = id
	} else {
		rest = s.head
	}
	s.head = nil
	s.mu.Unlock()
	if len(rest) > 0 {
		if _, err := s.w.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// waitID returns the session id once printed, giving up after limit or when the command ends (done).
func (s *sessionIDWriter) waitID(done chan error, limit time.Duration) string {
	deadline := time.Now().Add(limit)
	for {
		if id := s.ID(); id != "" || time.Now().After(deadline) {
			return id
		}
		select {
		case err := <-done:
			done <- err // for the caller, who waits on it too
			return s.ID()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ID returns the session id, once printed.
func (s *sessionIDWriter) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := strconv.Atoi(s.id); err != nil {
		return ""
	}
	return s.id
}

// ShellQuoteAll quotes each word for a POSIX shell and joins them with spaces.
func ShellQuoteAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = ShellQuote(w)
	}
	return strings.Join(q, " ")
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func signalNumber(sig string) int {
	for n, name := range map[int]string{1: "HUP", 2: "INT", 3: "QUIT", 6: "ABRT", 9: "KILL", 13: "PIPE", 14: "ALRM", 15: "TERM"} {
		if name == sig {
			return n
		}
	}
	return 0
}

// cappedBuffer keeps the first maxOutput bytes written to it.
type cappedBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.buf.Len(); room < len(p) {
		b.truncated = true
		b.buf.Write(p[:max(0, room)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte {
	if b.truncated {
		return append(b.buf.Bytes(), "\n[output truncated]"...)
	}
	return b.buf.Bytes()
}
