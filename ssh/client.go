package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	xssh "golang.org/x/crypto/ssh"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// Dialer connects to cluster hosts. One Dialer serves a whole run: host keys and credentials are shared.
type Dialer struct {
	HostKeys    *HostKeys
	Credentials *Credentials
	// ConnectTimeout bounds each hop's TCP connect and SSH handshake.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command unless its context is shorter; 0 for none.
	CommandTimeout time.Duration
	// KeepAlive is the interval of keepalive requests; a connection that misses three is closed.
	KeepAlive time.Duration
	// SudoPassword is fed to sudo on stdin for hosts whose user is not root, where sudo asks for it; empty
	// means passwordless sudo.
	SudoPassword string
	// Attempts is how many times a transient connect failure is tried (at least 1).
	Attempts int
	// SumsDir is where hosts record the hashes of uploaded files (DefaultSumsDir when empty); tests whose
	// "hosts" are this machine point it at a folder of their own.
	SumsDir string
	// dialTCP opens the first hop's TCP connection; tests wrap it to cut connections.
	dialTCP func(ctx context.Context, addr string) (net.Conn, error)
}

// endpoint is one SSH server on the way to a host.
type endpoint struct {
	address, user, keyPath, hostKey string
	port                            int
}

func (e endpoint) hostPort() string { return net.JoinHostPort(e.address, strconv.Itoa(e.port)) }

// Connect opens one multiplexed connection to h, through its bastions, verifying every hop's host key.
// Transient network failures are retried with backoff; authentication and host-key failures never are.
// Any failure is an *UnreachableError.
func (d *Dialer) Connect(ctx context.Context, h api.Host) (*Client, error) {
	hops := make([]endpoint, 0, len(h.Bastions)+1)
	for _, b := range h.Bastions {
		hops = append(hops, endpoint{address: b.Address, port: b.Port, user: b.User, keyPath: b.SSHKeyPath, hostKey: b.HostKey})
	}
	target := endpoint{address: h.Address, port: h.Port, user: h.User, keyPath: h.SSHKeyPath, hostKey: h.HostKey}
	hops = append(hops, target)

	attempts := max(1, d.Attempts)
	backoff := 200 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		var chain []*xssh.Client
		chain, err = d.dialChain(ctx, hops)
		if err == nil {
			c := &Client{name: h.Name, address: target.hostPort(), user: h.User, conn: chain[len(chain)-1], chain: chain,
				cmdTimeout: d.CommandTimeout, sudoPassword: d.SudoPassword, sessions: make(chan struct{}, maxSessions),
				shells: shellPool{idle: make(chan *shell, maxShells)},
				closed: make(chan struct{}), sumsDir: d.SumsDir, sudo: sudoRule{lock: make(chan struct{}, 1)},
				redial: func(ctx context.Context) ([]*xssh.Client, error) { return d.dialChain(ctx, hops) }}
			if d.KeepAlive > 0 {
				go c.keepAlive(d.KeepAlive)
			}
			return c, nil
		}
		if attempt >= attempts || !transient(err) || ctx.Err() != nil {
			break
		}
		// jitter spreads the retries of many hosts failing at once
		wait := backoff + time.Duration(rand.Int64N(int64(backoff/2)))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		backoff *= 2
	}
	return nil, &UnreachableError{Host: h.Name, Address: target.hostPort(), Err: err}
}

func (d *Dialer) dialChain(ctx context.Context, hops []endpoint) ([]*xssh.Client, error) {
	var chain []*xssh.Client
	closeAll := func() {
		for i := len(chain) - 1; i >= 0; i-- {
			chain[i].Close()
		}
	}
	for i, hop := range hops {
		c, err := d.dialHop(ctx, chain, hop)
		if err != nil {
			closeAll()
			if i < len(hops)-1 {
				return nil, fmt.Errorf("bastion %s: %w", hop.hostPort(), err)
			}
			return nil, err
		}
		chain = append(chain, c)
	}
	return chain, nil
}

func (d *Dialer) dialHop(ctx context.Context, chain []*xssh.Client, hop endpoint) (*xssh.Client, error) {
	timeout := d.ConnectTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	addr := hop.hostPort()
	var conn net.Conn
	var err error
	switch {
	case len(chain) > 0:
		if conn, err = chain[len(chain)-1].DialContext(hctx, "tcp", addr); err != nil {
			return nil, fmt.Errorf("the bastion before it could not open a connection to %s: %w", addr, err)
		}
	case d.dialTCP != nil:
		conn, err = d.dialTCP(hctx, addr)
	default:
		conn, err = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(hctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	auth, err := d.Credentials.Methods(hop.keyPath)
	if err != nil {
		conn.Close()
		return nil, &AuthError{User: hop.user, Address: addr, Err: err}
	}
	check, err := d.HostKeys.Callback(addr, hop.hostKey)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cfg := &xssh.ClientConfig{
		User:              hop.user,
		Auth:              auth,
		HostKeyCallback:   check,
		HostKeyAlgorithms: d.HostKeys.Algorithms(addr, hop.hostKey),
		ClientVersion:     "SSH-2.0-privcloud",
		Timeout:           timeout,
	}
	// The handshake has no context of its own: closing the connection is how a cancel or timeout stops it.
	stop := context.AfterFunc(hctx, func() { conn.Close() })
	sc, chans, reqs, err := xssh.NewClientConn(conn, addr, cfg)
	if !stop() && err == nil {
		sc.Close()
		err = hctx.Err()
	}
	if err != nil {
		if ctxErr := hctx.Err(); ctxErr != nil && ctx.Err() == nil {
			err = fmt.Errorf("no SSH handshake within %s: %w", timeout, err)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			err = &AuthError{User: hop.user, Address: addr, Err: err}
		}
		return nil, err
	}
	return xssh.NewClient(sc, chans, reqs), nil
}

// transient reports whether a connect failure may go away on its own (a host still booting, a dropped
// packet). Authentication, host-key and cancellation failures are final.
func transient(err error) bool {
	var hk *HostKeyError
	var auth *AuthError
	switch {
	case errors.As(err, &hk), errors.As(err, &auth), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maxSessions stays under OpenSSH's default MaxSessions (10) so parallel commands on one host queue instead of
// being refused.
const maxSessions = 8

// Client is a connected host: one SSH connection multiplexing every command, upload and dial.
type Client struct {
	name, address, user string
	redial              func(context.Context) ([]*xssh.Client, error)
	cmdTimeout          time.Duration
	sudoPassword        string
	sudo                sudoRule
	sumsDir             string
	sessions            chan struct{}
	shells              shellPool

	mu    sync.Mutex
	conn  *xssh.Client
	chain []*xssh.Client // bastions first, the host's own connection last

	closeOnce sync.Once
	closed    chan struct{}
}

func (c *Client) client() *xssh.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// reconnect replaces a lost connection with a new one through the same hops and host-key checks.
func (c *Client) reconnect(ctx context.Context) error {
	chain, err := c.redial(ctx)
	if err != nil {
		return &UnreachableError{Host: c.name, Address: c.address, Err: err}
	}
	c.mu.Lock()
	old := c.chain
	c.conn, c.chain = chain[len(chain)-1], chain
	c.mu.Unlock()
	for i := len(old) - 1; i >= 0; i-- {
		old[i].Close()
	}
	return nil
}

var _ Host = (*Client)(nil)

// Name returns the host's name from cluster.yaml.
func (c *Client) Name() string { return c.name }

// Address returns the host:port connected to.
func (c *Client) Address() string { return c.address }

// Close closes the connection and every bastion hop behind it.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		c.shells.closeIdle()
		c.mu.Lock()
		chain := c.chain
		c.mu.Unlock()
		for i := len(chain) - 1; i >= 0; i-- {
			if cerr := chain[i].Close(); cerr != nil && i == len(chain)-1 {
				err = cerr
			}
		}
	})
	return err
}

// Dial opens a connection from the host to addr through the SSH connection ("tcp" or "unix").
func (c *Client) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client().DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: dial %s %s: %w", c.name, network, addr, err)
	}
	return conn, nil
}

// keepAlive sends keepalive requests and closes the connection when three in a row go unanswered, so a dead
// host fails its commands instead of hanging them.
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.client().SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case err := <-reply:
			if err != nil {
				c.Close()
				return
			}
			missed = 0
		case <-time.After(every):
			if missed++; missed >= 3 {
				c.Close()
				return
			}
		case <-c.closed:
			return
		}
	}
}
