package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	xssh "golang.org/x/crypto/ssh"
)

// sudoProbe succeeds only under a NOPASSWD rule: -k ignores cached credentials and -n forbids asking.
const sudoProbe = "sudo -k -n -- sh -c true"

// sudoRule remembers whether sudo runs the user's commands without a password, found once per connection.
type sudoRule struct {
	lock       chan struct{} // held while probing; a channel, so a command waiting for it honours its context
	conn       *xssh.Client  // the connection the answer was found on
	noPassword bool
}

// privileged wraps cmd in sudo for non-root users. The password, when there is one, goes first on stdin,
// never on the command line, and only where sudo asks for it: under a NOPASSWD rule sudo never reads stdin,
// and the password would become the command's input.
func (c *Client) privileged(ctx context.Context, cmd string, stdin io.Reader) (string, io.Reader, error) {
	if c.user == "root" {
		return "sh -c " + ShellQuote(cmd), stdin, nil
	}
	if c.sudoPassword == "" {
		return "sudo -n -- sh -c " + ShellQuote(cmd), stdin, nil
	}
	noPassword, err := c.sudoNoPassword(ctx)
	if err != nil {
		return "", nil, err
	}
	if noPassword {
		return "sudo -n -- sh -c " + ShellQuote(cmd), stdin, nil
	}
	// -k makes sudo always read the password, so it never reaches the command itself
	pw := strings.NewReader(c.sudoPassword + "\n")
	if stdin == nil {
		return "sudo -k -S -p '' -- sh -c " + ShellQuote(cmd), pw, nil
	}
	return "sudo -k -S -p '' -- sh -c " + ShellQuote(cmd), io.MultiReader(pw, stdin), nil
}

// sudoNoPassword reports whether sudo lets the user run commands without a password, probing once per
// connection: a reconnect probes again.
func (c *Client) sudoNoPassword(ctx context.Context) (bool, error) {
	select {
	case c.sudo.lock <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-c.sudo.lock }()
	conn := c.client()
	if c.sudo.conn == conn {
		return c.sudo.noPassword, nil
	}
	noPassword, err := c.probeSudo(ctx, conn)
	if err != nil {
		return false, err
	}
	c.sudo.conn, c.sudo.noPassword = conn, noPassword
	return noPassword, nil
}

// probeSudo runs sudoProbe on conn with no input. A non-zero exit, from a rule that asks for a password or
// any other refusal, leaves commands to the password form, which reports sudo's own error.
func (c *Client) probeSudo(ctx context.Context, conn *xssh.Client) (bool, error) {
	if err := c.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-c.sessions }()
	sess, err := openSession(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	defer sess.Close()
	done := make(chan error, 1)
	go func() { done <- sess.Run(sudoProbe) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	var exit *xssh.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit):
		return false, nil
	}
	return false, fmt.Errorf("%w: %v", ErrConnectionLost, err)
}
