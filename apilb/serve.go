package apilb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/inetaf/tcpproxy"
	"sigs.k8s.io/yaml"
)

// Config is the load balancer's configuration file, written by privcloud on every node.
type Config struct {
	// Listen is where the node's clients connect (127.0.0.1:6444).
	Listen string `json:"listen"`
	// Health serves /healthz (200 while a backend is up) and /backends (each backend's state, JSON).
	Health string `json:"health"`
	// Backends are the API servers, host:port.
	Backends []string `json:"backends"`
}

// LoadConfig reads and checks the configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, f := range []struct{ name, value string }{{"listen", c.Listen}, {"health", c.Health}} {
		if _, _, err := net.SplitHostPort(f.value); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, f.name, err)
		}
	}
	if len(c.Backends) == 0 {
		return nil, fmt.Errorf("%s: backends: at least one API server is needed", path)
	}
	for _, a := range c.Backends {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%s: backends: %w", path, err)
		}
	}
	return &c, nil
}

// ReadyzCheck checks an API server by reading /readyz over TLS verified with caFile, as the client certificate
// certFile/keyFile (any authenticated identity may read it).
func ReadyzCheck(caFile, certFile, keyFile string) (Check, error) {
	check, _, err := loadCredentials(caFile, certFile, keyFile)
	return check, err
}

// loadCredentials reads the CA, the client certificate and its key, and makes the check they make: one that
// cannot be made (no certificate in the CA file, a key that does not match) names the three files.
func loadCredentials(caFile, certFile, keyFile string) (Check, [3][]byte, error) {
	var pems [3][]byte
	for i, path := range []string{caFile, certFile, keyFile} {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, pems, err
		}
		pems[i] = data
	}
	check, err := readyzCheckFrom(pems[0], pems[1], pems[2])
	if err != nil {
		return nil, pems, fmt.Errorf("CA %s, client certificate %s, key %s: %w", caFile, certFile, keyFile, err)
	}
	return check, pems, nil
}

// readyzCheckFrom is ReadyzCheck with the files' contents.
func readyzCheckFrom(caPEM, certPEM, keyPEM []byte) (Check, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA file holds no certificate")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		// a fresh connection each time: a check must see whether the host still accepts connections
		DisableKeepAlives: true,
	}
	client := &http.Client{Transport: transport}
	return func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return &UnreachableError{Err: err}
		}
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return &NotReadyError{Reason: fmt.Sprintf("/readyz: %s: %s", resp.Status, firstLine(body))}
		}
		return nil
	}, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// Server is a running load balancer: the proxy and its health endpoint.
type Server struct {
	Balancer *Balancer
	proxy    *tcpproxy.Proxy
	health   *http.Server
	healthLn net.Listener
	proxyLn  net.Listener
}

// Start listens on c.Listen and c.Health and starts proxying. When inherited is not nil it is the proxy's
// listener, already bound to c.Listen (systemd's socket, which outlives restarts).
func Start(c *Config, check Check, s Settings, logger *log.Logger, inherited net.Listener) (*Server, error) {
	b := New(c.Backends, check, s, logger)
	var proxyLn net.Listener
	p := &tcpproxy.Proxy{ListenFunc: func(network, addr string) (net.Listener, error) {
		if inherited != nil {
			proxyLn = inherited
			return inherited, nil
		}
		ln, err := net.Listen(network, addr)
		proxyLn = ln
		return ln, err
	}}
	p.AddRoute(c.Listen, b.Target())
	if err := p.Start(); err != nil {
		b.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Health)
	if err != nil {
		p.Close()
		b.Close()
		return nil, err
	}
	srv := &Server{Balancer: b, proxy: p, healthLn: ln, proxyLn: proxyLn,
		health: &http.Server{Handler: HealthHandler(b), ReadHeaderTimeout: 5 * time.Second}}
	go srv.health.Serve(ln)
	return srv, nil
}

// HealthHandler serves /healthz and /backends for b.
func HealthHandler(b *Balancer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.Healthy() {
			http.Error(w, "no API server is ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/backends", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(b.Status())
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		io.WriteString(w, Metrics(b.Status()))
	})
	return mux
}

// Metrics is the backends' state in Prometheus's text format, for the monitoring add-on: a node whose
// balancer sees no API server loses the API, which no other component of the node would tell.
func Metrics(backends []Status) string {
	var b strings.Builder
	b.WriteString("# HELP privcloud_api_lb_backend_up Whether the API server passes the balancer's health checks.\n")
	b.WriteString("# TYPE privcloud_api_lb_backend_up gauge\n")
	for _, s := range backends {
		up := 0
		if s.Healthy {
			up = 1
		}
		fmt.Fprintf(&b, "privcloud_api_lb_backend_up{backend=%q} %d\n", s.Address, up)
	}
	b.WriteString("# HELP privcloud_api_lb_backend_connections Connections the balancer holds open to the API server.\n")
	b.WriteString("# TYPE privcloud_api_lb_backend_connections gauge\n")
	for _, s := range backends {
		fmt.Fprintf(&b, "privcloud_api_lb_backend_connections{backend=%q} %d\n", s.Address, s.Connections)
	}
	return b.String()
}

// ProxyAddr is where the proxy listens (its port is chosen when c.Listen ends in :0).
func (s *Server) ProxyAddr() string { return s.proxyLn.Addr().String() }

// HealthAddr is where the health endpoint listens (its port is chosen when c.Health ends in :0).
func (s *Server) HealthAddr() string { return s.healthLn.Addr().String() }

// Wait blocks until the proxy stops.
func (s *Server) Wait() error { return s.proxy.Wait() }

// Close stops listening and checking; proxied connections end with their clients.
func (s *Server) Close() error {
	s.Balancer.Close()
	return errors.Join(s.proxy.Close(), s.health.Close())
}

// SystemdListener is the one listening socket systemd handed this process (socket activation: LISTEN_PID is
// ours and LISTEN_FDS is 1, the socket being file descriptor 3), or nil when it handed none.
func SystemdListener() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	if n := os.Getenv("LISTEN_FDS"); n != "1" {
		return nil, fmt.Errorf("systemd handed %s sockets, want 1", n)
	}
	f := os.NewFile(3, "systemd socket")
	defer f.Close() // FileListener holds a duplicate
	return net.FileListener(f)
}
