package apilb

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fast = Settings{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, FailAfter: 2, DialTimeout: 300 * time.Millisecond}

// nameServer is a TCP server on loopback that writes its name on every connection and then echoes lines: an
// API server stand-in whose connections the test can tell apart.
func nameServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, name+"\n")
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// health is the checks' answers, set by the test.
type health struct {
	mu   sync.Mutex
	down map[string]bool
}

func (h *health) set(addr string, down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[addr] = down
}

func (h *health) check(_ context.Context, addr string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down[addr] {
		return &UnreachableError{Err: errors.New("not ready")}
	}
	return nil
}

func start(t *testing.T, backends []string, h *health) *Server {
	t.Helper()
	srv, err := Start(&Config{Listen: "127.0.0.1:0", Health: "127.0.0.1:0", Backends: backends}, h.check, fast, log.New(io.Discard, "", 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// connect opens a connection through the proxy and returns it with the name of the backend it reached.
func connect(t *testing.T, srv *Server) (net.Conn, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.ProxyAddr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the backend's name: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c, strings.TrimSpace(line)
}

// connectTo opens connections through the proxy until one reaches the backend named; the others are closed
// when the test ends.
func connectTo(t *testing.T, srv *Server, name string) net.Conn {
	t.Helper()
	for {
		c, got := connect(t, srv)
		if got == name {
			return c
		}
		t.Cleanup(func() { c.Close() })
	}
}

func reached(t *testing.T, srv *Server, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, name := connect(t, srv)
		c.Close()
		got[name]++
	}
	return got
}

// waitFor polls cond with a generous deadline: the checks run in the background.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func healthyCount(srv *Server) int {
	n := 0
	for _, s := range srv.Balancer.Status() {
		if s.Healthy {
			n++
		}
	}
	return n
}

func TestSpreadsConnectionsOverHealthyBackends(t *testing.T) {
	a, b, c := nameServer(t, "a"), nameServer(t, "b"), nameServer(t, "c")
	srv := start(t, []string{a, b, c}, &health{down: map[string]bool{}})
	waitFor(t, "3 healthy backends", func() bool { return healthyCount(srv) == 3 })
	got := reached(t, srv, 9)
	if got["a"] != 3 || got["b"] != 3 || got["c"] != 3 {
		t.Errorf("9 connections over 3 healthy backends, round robin: %v", got)
	}
}

func TestABackendFailingItsChecksIsSkippedAndItsConnectionsClosed(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	h := &health{down: map[string]bool{}}
	srv := start(t, []string{a, b}, h)
	waitFor(t, "2 healthy backends", func() bool { return healthyCount(srv) == 2 })
	toA := connectTo(t, srv, "a")
	defer toA.Close()

	h.set(a, true)
	waitFor(t, "a marked down", func() bool { return healthyCount(srv) == 1 })
	// the open connection to a is closed by the balancer: its client reconnects at once
	toA.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := toA.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the connection to the backend marked down stayed open: %v", err)
	}
	if got := reached(t, srv, 6); got["b"] != 6 {
		t.Errorf("with a down every connection goes to b: %v", got)
	}
	h.set(a, false)
	waitFor(t, "a up again", func() bool { return healthyCount(srv) == 2 })
	if got := reached(t, srv, 4); got["a"] != 2 {
		t.Errorf("a back in the rotation: %v", got)
	}
}

func TestARefusingBackendIsPassedOverWithoutWaitingForChecks(t *testing.T) {
	// a port nothing listens on: connections are refused while the checks still say healthy
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	b := nameServer(t, "b")
	srv := start(t, []string{gone, b}, &health{down: map[string]bool{}})
	if got := reached(t, srv, 4); got["b"] != 4 {
		t.Errorf("every connection reaches b: %v", got)
	}
	if s := srv.Balancer.Status(); s[0].Healthy && s[0].Address == gone {
		t.Errorf("the refusing backend is still marked healthy: %+v", s)
	}
}

func TestMembershipChangesKeepOpenConnections(t *testing.T) {
	a, b, c := nameServer(t, "a"), nameServer(t, "b"), nameServer(t, "c")
	srv := start(t, []string{a, b}, &health{down: map[string]bool{}})
	waitFor(t, "2 healthy backends", func() bool { return healthyCount(srv) == 2 })
	open := map[string]net.Conn{}
	for len(open) < 2 {
		conn, name := connect(t, srv)
		if open[name] != nil {
			conn.Close()
			continue
		}
		open[name] = conn
		defer conn.Close()
	}

	// a control plane leaves, another joins
	srv.Balancer.SetBackends([]string{b, c})
	waitFor(t, "c checked", func() bool { return healthyCount(srv) == 2 })
	if got := reached(t, srv, 6); got["a"] != 0 || got["b"] != 3 || got["c"] != 3 {
		t.Errorf("after the change new connections go to b and c only: %v", got)
	}
	// connections made before the change still work, the one to the removed backend included: its API
	// server's graceful shutdown, not the balancer, ends it
	for name, conn := range open {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "ping\n"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Errorf("the connection to %s broke with the membership change: %q %v", name, line, err)
		}
	}
}

func TestNoHealthyBackendStillTriesThemAll(t *testing.T) {
	a := nameServer(t, "a")
	srv := start(t, []string{a}, &health{down: map[string]bool{a: true}})
	waitFor(t, "a checked", func() bool { return srv.Balancer.Status()[0].Checked })
	// the checks may be wrong (or the API server not ready yet, during bootstrap): trying beats refusing
	if got := reached(t, srv, 2); got["a"] != 2 {
		t.Errorf("with no healthy backend the proxy still tries them: %v", got)
	}
}

func TestHealthEndpoint(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	h := &health{down: map[string]bool{a: true, b: true}}
	srv := start(t, []string{a, b}, h)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.HealthAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitFor(t, "both checked", func() bool {
		s := srv.Balancer.Status()
		return s[0].Checked && s[1].Checked
	})
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no API server is ready") {
		t.Errorf("/healthz with every backend down: %d %q", code, body)
	}
	h.set(b, false)
	waitFor(t, "b up", func() bool { return healthyCount(srv) == 1 })
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz with b up: %d %q", code, body)
	}
	_, body := get("/backends")
	var st []Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Address != a || st[0].Healthy || st[0].LastError != "not ready" || st[1].Address != b || !st[1].Healthy {
		t.Errorf("/backends: %s", body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, fmt.Sprintf("privcloud_api_lb_backend_up{backend=%q} 0\n", a)) ||
		!strings.Contains(body, fmt.Sprintf("privcloud_api_lb_backend_up{backend=%q} 1\n", b)) {
		t.Errorf("/metrics: %s", body)
	}
}

func TestLoadConfigNamesTheBadField(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ text, want string }{
		{"listen: 127.0.0.1:6444\nhealth: 127.0.0.1:6445\nbackends: [10.0.0.1:6443]\n", ""},
		{"listen: nowhere\nhealth: 127.0.0.1:6445\nbackends: [10.0.0.1:6443]\n", "listen"},
		{"listen: 127.0.0.1:6444\nhealth: 127.0.0.1:6445\nbackends: []\n", "backends: at least one"},
		{"listen: 127.0.0.1:6444\nhealth: 127.0.0.1:6445\nbackends: [10.0.0.1]\n", "backends"},
		{"listen: 127.0.0.1:6444\nhealth: 127.0.0.1:6445\nbackends: [10.0.0.1:6443]\nbogus: 1\n", "bogus"},
	} {
		p := filepath.Join(dir, "c.yaml")
		os.WriteFile(p, []byte(tc.text), 0o600)
		_, err := LoadConfig(p)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: got %v, want an error naming %q", tc.text, err, tc.want)
		}
	}
}

// TestReadyzCheck reads /readyz over TLS verified with the CA file and tells a ready API server from one that
// is not.
func TestReadyzCheck(t *testing.T) {
	ready := true
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready {
			http.Error(w, "[-]etcd failed: reason withheld\nreadyz check failed", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer api.Close()
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o644)
	writeClientCert(t, certFile, keyFile)

	check, err := ReadyzCheck(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(api.URL, "https://")
	if err := check(context.Background(), addr); err != nil {
		t.Errorf("a ready API server: %v", err)
	}
	ready = false
	if err := check(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "[-]etcd failed") {
		t.Errorf("an API server that is not ready: %v", err)
	}
	// nothing listening: the host is unreachable, which closes its connections
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()
	var unreachable *UnreachableError
	if err := check(context.Background(), gone); !errors.As(err, &unreachable) {
		t.Errorf("a port nothing listens on: %v, want an UnreachableError", err)
	}
	// a server another CA signed is not trusted (the client certificate serves as the other CA)
	ready = true
	wrongCA, err := ReadyzCheck(certFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := wrongCA(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a server the CA did not sign passed the check: %v", err)
	}
}

func writeClientCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "privcloud:api-lb"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
}

// An API server that answers but is not ready leaves the rotation and keeps its connections: the cause (etcd
// without quorum) may be every API server's, and its own graceful shutdown moves its clients.
func TestANotReadyBackendKeepsItsConnections(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	var mu sync.Mutex
	notReady := false
	check := func(_ context.Context, addr string) error {
		mu.Lock()
		defer mu.Unlock()
		if addr == a && notReady {
			return &NotReadyError{Reason: "/readyz: 500: [-]etcd failed"}
		}
		return nil
	}
	srv, err := Start(&Config{Listen: "127.0.0.1:0", Health: "127.0.0.1:0", Backends: []string{a, b}}, check, fast, log.New(io.Discard, "", 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	waitFor(t, "2 healthy backends", func() bool { return healthyCount(srv) == 2 })
	toA := connectTo(t, srv, "a")
	defer toA.Close()
	mu.Lock()
	notReady = true
	mu.Unlock()
	waitFor(t, "a out of the rotation", func() bool { return healthyCount(srv) == 1 })
	if got := reached(t, srv, 4); got["b"] != 4 {
		t.Errorf("new connections go to b: %v", got)
	}
	toA.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(toA, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(toA).ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("the connection to the not-ready backend was closed: %q %v", line, err)
	}
}

// Round robin goes over the healthy backends only: with one of three down, the two others share evenly.
func TestRoundRobinOverTheHealthyOnly(t *testing.T) {
	a, b, c := nameServer(t, "a"), nameServer(t, "b"), nameServer(t, "c")
	srv := start(t, []string{a, b, c}, &health{down: map[string]bool{a: true}})
	waitFor(t, "b and c healthy", func() bool { return healthyCount(srv) == 2 })
	if got := reached(t, srv, 8); got["b"] != 4 || got["c"] != 4 {
		t.Errorf("8 connections over b and c: %v", got)
	}
}

// A listener handed over (systemd's socket) is the one the proxy serves on: its address wins over the
// configuration's, and a connection made to it reaches a backend.
func TestStartServesOnAnInheritedListener(t *testing.T) {
	a := nameServer(t, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &health{down: map[string]bool{}}
	srv, err := Start(&Config{Listen: "127.0.0.1:1", Health: "127.0.0.1:0", Backends: []string{a}}, h.check, fast, log.New(io.Discard, "", 0), ln)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if srv.ProxyAddr() != ln.Addr().String() {
		t.Fatalf("the proxy listens on %s, want the inherited %s", srv.ProxyAddr(), ln.Addr())
	}
	waitFor(t, "a healthy backend", func() bool { return healthyCount(srv) == 1 })
	if got := reached(t, srv, 2); got["a"] != 2 {
		t.Errorf("connections to the inherited listener reached %v, want a twice", got)
	}
}
