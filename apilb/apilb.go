// Package apilb is the node-local API server load balancer every node runs: kubelet and kube-proxy reach
// 127.0.0.1:6444, and each connection goes to one of the cluster's API servers that answers /readyz, so losing
// a control plane takes no node's API access away. The proxying is inetaf/tcpproxy's (the library RKE2's agent
// load balancer is built on); this package chooses the backend, checks health and keeps the membership.
package apilb

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/inetaf/tcpproxy"
)

// Check tells whether the API server at addr is ready to take requests.
type Check func(ctx context.Context, addr string) error

// Settings tune how fast a backend is marked down and up again.
type Settings struct {
	Interval    time.Duration // between two checks of one backend
	Timeout     time.Duration // of one check
	FailAfter   int           // consecutive failed checks that mark a backend down
	DialTimeout time.Duration // of one connection attempt to a backend
}

// DefaultSettings mark a backend that stopped answering down within about 2*(Interval+Timeout), a few seconds
// and well inside the node controller's grace period, while one slow answer under load does not.
var DefaultSettings = Settings{Interval: time.Second, Timeout: 2 * time.Second, FailAfter: 2, DialTimeout: 2 * time.Second}

// Balancer spreads connections over the healthy backends, round robin.
type Balancer struct {
	settings Settings
	log      *log.Logger

	mu       sync.Mutex
	check    Check
	backends []*backend // in the configured order
	next     int        // round-robin position
	closed   bool
}

// backend is one API server and the connections proxied to it.
type backend struct {
	addr    string
	healthy bool // the last checks passed (false until the first one did)
	checked bool
	fails   int
	lastErr string
	since   time.Time             // of the last change of healthy
	conns   map[net.Conn]struct{} // proxied connections to it
	stop    context.CancelFunc    // ends its health checks
}

// NotReadyError is an API server that answered its check but is not ready (etcd unreachable, shutting down):
// it is taken out of the rotation, but its connections stay, since the cause may be shared by every API server
// (etcd without quorum) and its own graceful shutdown moves its clients on.
type NotReadyError struct{ Reason string }

func (e *NotReadyError) Error() string { return e.Reason }

// UnreachableError is a host that did not take the check's connection at all (refused, no route, no answer):
// the connections to it are dead too. A check that connected and then timed out may be a loaded host, and
// closes nothing.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// New returns a balancer over backends ("host:port"), checking each with check.
func New(backends []string, check Check, s Settings, logger *log.Logger) *Balancer {
	if logger == nil {
		logger = log.Default()
	}
	b := &Balancer{check: check, settings: s, log: logger}
	b.SetBackends(backends)
	return b
}

// SetBackends makes addrs the backends. New ones are checked at once; removed ones get no new connection,
// and their open connections stay until the API server closes them (its graceful shutdown moves clients on
// without a failed request), so a membership change restarts nothing and drops nothing.
func (b *Balancer) SetBackends(addrs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	var kept []*backend
	for _, be := range b.backends {
		if slices.Contains(addrs, be.addr) {
			kept = append(kept, be)
			continue
		}
		be.stop()
		b.log.Printf("backend %s removed (%d open connections left to it)", be.addr, len(be.conns))
	}
	for _, a := range addrs {
		if slices.ContainsFunc(kept, func(be *backend) bool { return be.addr == a }) {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		be := &backend{addr: a, conns: map[net.Conn]struct{}{}, stop: cancel, since: time.Now()}
		kept = append(kept, be)
		b.log.Printf("backend %s added", a)
		go b.watch(ctx, be)
	}
	// the configured order, so the round robin is the same on every node after a reload
	slices.SortStableFunc(kept, func(x, y *backend) int { return slices.Index(addrs, x.addr) - slices.Index(addrs, y.addr) })
	b.backends = kept
}

// SetCheck replaces the health check (new credentials): the next check of each backend uses it. Open
// connections stay.
func (b *Balancer) SetCheck(check Check) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.check = check
}

// watch checks be until its context ends.
func (b *Balancer) watch(ctx context.Context, be *backend) {
	for {
		b.mu.Lock()
		check := b.check
		b.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, b.settings.Timeout)
		err := check(cctx, be.addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		b.record(be, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.settings.Interval):
		}
	}
}

// record takes a check's result: one success marks the backend up, FailAfter failures in a row mark it down.
// When the host does not take a connection at all, its connections are closed as well, which a dead host would
// otherwise keep open until TCP gives up on them; but never when no other backend is healthy: clients would
// only reconnect to the same servers.
func (b *Balancer) record(be *backend, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || !slices.Contains(b.backends, be) { // removed while its check ran
		return
	}
	be.checked = true
	if err == nil {
		be.fails, be.lastErr = 0, ""
		if !be.healthy {
			be.healthy, be.since = true, time.Now()
			b.log.Printf("backend %s is up", be.addr)
		}
		return
	}
	be.fails++
	be.lastErr = err.Error()
	var notReady *NotReadyError
	// an answer of "not ready" is certain (a stopping API server says so for its last seconds): out at once;
	// silence may be a slow moment, and needs FailAfter in a row
	if be.fails < b.settings.FailAfter && !errors.As(err, &notReady) {
		return
	}
	if be.healthy {
		be.healthy, be.since = false, time.Now()
		b.log.Printf("backend %s is down: %d checks failed: %v", be.addr, be.fails, err)
	}
	var unreachable *UnreachableError
	if errors.As(err, &unreachable) && len(be.conns) > 0 && slices.ContainsFunc(b.backends, func(o *backend) bool { return o.healthy }) {
		n := len(be.conns)
		for c := range be.conns {
			c.Close()
		}
		b.log.Printf("backend %s does not answer: closed its %d connections", be.addr, n)
	}
}

// candidates are the backends to try for a new connection: the healthy ones, each in turn first (round robin
// over the healthy ones only, so each gets its share), then, as a last resort, those not known healthy (at
// start, or when every check fails, trying beats refusing).
func (b *Balancer) candidates() []*backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	var healthy, rest []*backend
	for _, be := range b.backends {
		if be.healthy {
			healthy = append(healthy, be)
		} else {
			rest = append(rest, be)
		}
	}
	if n := len(healthy); n > 0 {
		first := b.next % n
		healthy = append(healthy[first:], healthy[:first]...)
	}
	b.next++
	return append(healthy, rest...)
}

// ErrNoBackend is returned when no backend accepted a connection.
var ErrNoBackend = errors.New("no API server reachable")

// dial connects to the first candidate that accepts. A backend that refuses or does not answer is taken out of
// the rotation at once (the next connection does not wait for its checks); its checks decide about its
// connections.
func (b *Balancer) dial(ctx context.Context) (net.Conn, error) {
	var errs []error
	for _, be := range b.candidates() {
		dctx, cancel := context.WithTimeout(ctx, b.settings.DialTimeout)
		c, err := (&net.Dialer{}).DialContext(dctx, "tcp", be.addr)
		cancel()
		b.mu.Lock()
		if err != nil {
			errs = append(errs, err)
			if be.healthy {
				be.healthy, be.since, be.lastErr = false, time.Now(), err.Error()
				b.log.Printf("backend %s is down: connection failed: %v", be.addr, err)
			}
			b.mu.Unlock()
			continue
		}
		if !slices.Contains(b.backends, be) { // removed while dialling
			b.mu.Unlock()
			c.Close()
			continue
		}
		be.conns[c] = struct{}{}
		b.mu.Unlock()
		return c, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrNoBackend, errors.Join(errs...))
}

// forget drops the record of a proxied connection once it ended.
func (b *Balancer) forget(c net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, be := range b.backends {
		delete(be.conns, c)
	}
}

// Target is the tcpproxy target proxying each accepted connection to a backend.
func (b *Balancer) Target() tcpproxy.Target { return target{b} }

type target struct{ b *Balancer }

func (t target) HandleConn(src net.Conn) {
	client := src.RemoteAddr().String()
	var dst net.Conn
	dp := &tcpproxy.DialProxy{
		// the balancer picks the address
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := t.b.dial(ctx)
			dst = c
			return c, err
		},
		DialTimeout: -1, // each attempt has its own timeout
		// TCP keepalives on both sides: a half-open connection to a vanished host is found in seconds
		KeepAlivePeriod: 5 * time.Second,
		OnDialError: func(src net.Conn, err error) {
			t.b.log.Printf("client %s: %v", client, err)
			src.Close()
		},
	}
	dp.HandleConn(src)
	if dst != nil {
		t.b.forget(dst)
	}
}

// Status is one backend as the health endpoint reports it.
type Status struct {
	Address     string    `json:"address"`
	Healthy     bool      `json:"healthy"`
	Checked     bool      `json:"checked"`
	Since       time.Time `json:"since"`
	LastError   string    `json:"lastError,omitempty"`
	Connections int       `json:"connections"`
}

// Status reports every backend, in the configured order.
func (b *Balancer) Status() []Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Status, 0, len(b.backends))
	for _, be := range b.backends {
		out = append(out, Status{Address: be.addr, Healthy: be.healthy, Checked: be.checked, Since: be.since, LastError: be.lastErr, Connections: len(be.conns)})
	}
	return out
}

// Healthy reports whether at least one backend is up.
func (b *Balancer) Healthy() bool {
	return slices.ContainsFunc(b.Status(), func(s Status) bool { return s.Healthy })
}

// Close stops every health check.
func (b *Balancer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, be := range b.backends {
		be.stop()
	}
}
