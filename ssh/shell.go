package ssh

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	xssh "golang.org/x/crypto/ssh"
)

// A command without input runs in a long-lived shell on the host instead of a session of its own. A session
// costs the host a fork of sshd, the user's login shell (which may read a .bashrc of any weight) and the shell
// privcloud wraps the command in; a converged host answers most commands in a few milliseconds, so those
// costs were most of a no-op run. The long-lived shell runs each command with 'sh -c' and no input, as the
// session did: commands share no working directory, variables or traps, and $$ is the command's own.
//
// The framing: each command's stdout and stderr end with a line holding a random token the shell was started
// with (stdout's with the exit code), which the host's output cannot guess.

// maxShells is how many long-lived shells one connection keeps; parallel commands beyond them get sessions
// of their own.
const maxShells = 2

// shellFunc runs its argument as 'sh -c' did in a session of its own (its own $$, no input), then marks the
// end of its output on both streams.
const shellFunc = `privcloud_run() { sh -c "$1" </dev/null; printf '\n%[1]s %%d\n' "$?"; printf '\n%[1]s\n' >&2; }`

// shell is one long-lived remote shell, serving one command at a time.
type shell struct {
	conn   *xssh.Client // the connection it lives on: a reconnect leaves it behind
	sess   *xssh.Session
	stdin  io.WriteCloser
	sid    string // its session id: the process group a cancel kills
	stdout *framedStream
	stderr *framedStream
	done   chan struct{} // closed when the shell's session ended
}

// exited reports whether the shell's session ended (the shell was killed, the host rebooted).
func (sh *shell) exited() bool {
	select {
	case <-sh.done:
		return true
	default:
		return false
	}
}

// shellProgram is the program a long-lived shell runs as root, or "" where commands must take a session of
// their own: sudo that wants a password reads it from the command's input.
func (c *Client) shellProgram(ctx context.Context) (string, error) {
	if c.user == "root" {
		return "sh", nil
	}
	if c.sudoPassword == "" {
		return "sudo -n -- sh", nil
	}
	noPassword, err := c.sudoNoPassword(ctx)
	if err != nil || !noPassword {
		return "", err
	}
	return "sudo -n -- sh", nil
}

// takeShell returns an idle shell on the current connection, starting one when fewer than maxShells exist,
// or nil when the command should take a session of its own. A shell holds one of the connection's session
// slots for its lifetime.
func (c *Client) takeShell(ctx context.Context) *shell {
	conn := c.client()
	for {
		select {
		case sh := <-c.shells.idle:
			if sh.conn == conn && !sh.exited() {
				return sh
			}
			c.dropShell(sh) // gone, or left on a connection that was replaced
			continue
		default:
		}
		break
	}
	c.shells.mu.Lock()
	if c.shells.count >= maxShells || c.shells.refusedOn == conn {
		c.shells.mu.Unlock()
		return nil
	}
	c.shells.count++
	c.shells.mu.Unlock()
	sh, err := c.startShell(ctx, conn)
	if err != nil {
		c.shells.mu.Lock()
		c.shells.count--
		if ctx.Err() == nil {
			// a host that cannot keep a shell (sudo refusing, no sh) is not asked again on this connection
			c.shells.refusedOn = conn
		}
		c.shells.mu.Unlock()
		return nil // the session path reports whatever is wrong, command by command
	}
	return sh
}

// putShell returns a shell that finished its command cleanly to the idle ones.
func (c *Client) putShell(sh *shell) {
	select {
	case c.shells.idle <- sh:
	default: // cannot happen: the channel holds maxShells
		c.dropShell(sh)
	}
}

// dropShell ends a shell and frees its session slot.
func (c *Client) dropShell(sh *shell) {
	sh.stdout.abort()
	sh.stderr.abort()
	sh.stdin.Close()
	sh.sess.Close()
	<-c.sessions
	c.shells.mu.Lock()
	c.shells.count--
	c.shells.mu.Unlock()
}

func (c *Client) startShell(ctx context.Context, conn *xssh.Client) (*shell, error) {
	program, err := c.shellProgram(ctx)
	if err != nil || program == "" {
		return nil, errors.New("no shell")
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	token := make([]byte, 16)
	rand.Read(token)
	marker := "privcloud-end-" + hex.EncodeToString(token)
	sh := &shell{conn: conn, done: make(chan struct{})}
	fail := func(err error) (*shell, error) {
		if sh.stdout != nil {
			sh.stdout.abort()
			sh.stderr.abort()
		}
		if sh.sess != nil {
			sh.sess.Close()
		}
		<-c.sessions
		return nil, err
	}
	if sh.sess, err = openSession(ctx, conn); err != nil {
		return fail(err)
	}
	if sh.stdin, err = sh.sess.StdinPipe(); err != nil {
		return fail(err)
	}
	out, err := sh.sess.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	errs, err := sh.sess.StderrPipe()
	if err != nil {
		return fail(err)
	}
	sh.stdout, sh.stderr = newFramedStream(out, marker), newFramedStream(errs, marker)
	if err := sh.sess.Start(`printf 'privcloud-sid:%s\n' "$$" >&2; exec ` + program); err != nil {
		return fail(err)
	}
	go func() { sh.sess.Wait(); close(sh.done) }()
	// the first frame: the session id on stderr, nothing on stdout
	var head bytes.Buffer
	end := sh.frame(io.Discard, &head)
	start := fmt.Sprintf(shellFunc, marker) + fmt.Sprintf("\nprintf '\\n%[1]s 0\\n'; printf '\\n%[1]s\\n' >&2\n", marker)
	if _, err := io.WriteString(sh.stdin, start); err != nil {
		return fail(err)
	}
	select {
	case res := <-end:
		id, ok := bytes.CutPrefix(bytes.TrimSpace(head.Bytes()), []byte("privcloud-sid:"))
		if res.err != nil || !ok {
			return fail(fmt.Errorf("shell did not start: %v %q", res.err, head.String()))
		}
		sh.sid = string(id)
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	return sh, nil
}

// frameEnd is how one command's output ended: its exit code, or the stream's failure.
type frameEnd struct {
	code int
	err  error
}

// frame registers the next command's writers and returns where its end is reported.
func (sh *shell) frame(stdout, stderr io.Writer) <-chan frameEnd {
	end := make(chan frameEnd, 1)
	outEnd, errEnd := sh.stdout.next(stdout), sh.stderr.next(stderr)
	go func() {
		o, e := <-outEnd, <-errEnd
		if o.err == nil {
			o.err = e.err
		}
		end <- frameEnd{code: o.code, err: o.err}
	}()
	return end
}

// runShell runs cmd in sh. started is false when the command never reached the host (the shell was gone), so
// the caller may run it elsewhere; a shell that fails or is cancelled is dropped, never used again.
func (c *Client) runShell(ctx context.Context, sh *shell, cmd string, stdout, stderr io.Writer) (started bool, err error) {
	end := sh.frame(stdout, stderr)
	if _, err := io.WriteString(sh.stdin, "privcloud_run "+ShellQuote(cmd)+"\n"); err != nil {
		c.dropShell(sh)
		<-end
		return false, nil
	}
	select {
	case res := <-end:
		if res.err != nil {
			c.dropShell(sh)
			return true, fmt.Errorf("%s: %q: %w: %v", c.name, cmd, ErrConnectionLost, res.err)
		}
		c.putShell(sh)
		if res.code != 0 {
			return true, &ExecError{Host: c.name, Cmd: cmd, ExitCode: res.code}
		}
		return true, nil
	case <-ctx.Done():
		// the command and the shell around it end together (the kill needs a session slot: the shell's is
		// freed first)
		c.dropShell(sh)
		c.kill(sh.sid)
		<-end
		return true, fmt.Errorf("%s: %q: %w", c.name, cmd, ctx.Err())
	}
}

// shellPool is a connection's long-lived shells.
type shellPool struct {
	mu        sync.Mutex
	count     int
	refusedOn *xssh.Client // the connection on which a shell could not start
	idle      chan *shell
}

// closeIdle stops the idle shells' readers when the connection closes (which ends the shells themselves).
func (p *shellPool) closeIdle() {
	for {
		select {
		case sh := <-p.idle:
			sh.stdout.abort()
			sh.stderr.abort()
		default:
			return
		}
	}
}

// framedStream splits one output stream of a long-lived shell into the commands' outputs, each ended by a
// line starting with the marker.
type framedStream struct {
	r      io.Reader
	marker []byte // "\n" + token: the shell prints a newline first, so output need not end in one
	frames chan *frameReq
	stop   chan struct{}
	once   sync.Once
}

type frameReq struct {
	w   io.Writer
	end chan frameEnd
}

func newFramedStream(r io.Reader, token string) *framedStream {
	f := &framedStream{r: r, marker: []byte("\n" + token), frames: make(chan *frameReq), stop: make(chan struct{})}
	go f.loop()
	return f
}

// next registers the writer of the next command's output. The channel is unbuffered: a stopped stream
// never leaves a frame unanswered.
func (f *framedStream) next(w io.Writer) <-chan frameEnd {
	req := &frameReq{w: w, end: make(chan frameEnd, 1)}
	select {
	case f.frames <- req:
	case <-f.stop:
		req.end <- frameEnd{err: errors.New("shell stopped")}
	}
	return req.end
}

// abort ends the frame being read, and every later one, with an error.
func (f *framedStream) abort() { f.once.Do(func() { close(f.stop) }) }

func (f *framedStream) loop() {
	var pending []byte
	chunk := make([]byte, 32<<10)
	readErr := make(chan error, 1)
	var failed error
	for {
		var req *frameReq
		select {
		case req = <-f.frames:
		case <-f.stop:
			return
		}
		if failed != nil {
			req.end <- frameEnd{err: failed}
			continue
		}
		for {
			var done bool
			pending, done = f.deliver(req, pending)
			if done {
				break
			}
			// a read that blocks forever (a shell gone quiet) is abandoned when the frame is aborted
			go func() {
				n, err := f.r.Read(chunk)
				pending = append(pending, chunk[:n]...)
				readErr <- err
			}()
			var err error
			select {
			case err = <-readErr:
			case <-f.stop:
				req.end <- frameEnd{err: errors.New("shell stopped")}
				return
			}
			if err != nil {
				failed = err
				if _, done := f.deliver(req, pending); !done {
					req.end <- frameEnd{err: err}
				}
				break
			}
		}
	}
}

// deliver writes what pending holds of the current command's output to req and reports whether its end was
// seen; it returns what is left for the next command. A tail that may be the start of the marker is kept.
func (f *framedStream) deliver(req *frameReq, pending []byte) ([]byte, bool) {
	i := bytes.Index(pending, f.marker)
	if i < 0 {
		keep := min(len(pending), len(f.marker)-1)
		req.w.Write(pending[:len(pending)-keep])
		return append([]byte(nil), pending[len(pending)-keep:]...), false
	}
	rest := pending[i+len(f.marker):]
	nl := bytes.IndexByte(rest, '\n')
	if nl < 0 {
		req.w.Write(pending[:i])
		return append([]byte(nil), pending[i:]...), false
	}
	req.w.Write(pending[:i])
	code := 0
	if s := string(bytes.TrimSpace(rest[:nl])); s != "" {
		var err error
		if code, err = strconv.Atoi(s); err != nil {
			req.end <- frameEnd{err: fmt.Errorf("unreadable end of command: %q", s)}
			return append([]byte(nil), rest[nl+1:]...), true
		}
	}
	req.end <- frameEnd{code: code}
	return append([]byte(nil), rest[nl+1:]...), true
}
