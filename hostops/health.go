package hostops

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/ssh"
)

// ClientTLS is a TLS client configuration from files of the local PKI store: a CA to trust and a key pair
// to present.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// WaitHealthy polls https://addr/path on the host (http:// when cfg is nil: a loopback endpoint without TLS),
// through the SSH connection, until it answers 200 with a body containing want. When the limit passes, the
// error carries the end of the unit's journal.
func WaitHealthy(ctx context.Context, h ssh.Host, unit, addr, path, want string, cfg *tls.Config, limit time.Duration) error {
	scheme := "https"
	if cfg == nil {
		scheme = "http"
	}
	p := NewHealthProbe(h, scheme, addr, path, want, cfg)
	defer p.Close()
	err := wait.Poll(ctx, limit, 500*time.Millisecond, func() error { return p.Check(ctx) })
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s not healthy after %s (%s: %v); its journal ends:\n%s", unit, limit, p.url, err, JournalTail(ctx, h, unit))
	}
	return err
}

// WaitFile waits until the file at path on the host exists and is not empty: what a unit writes once it is
// ready. When the limit passes, the error carries the end of the unit's journal.
func WaitFile(ctx context.Context, h ssh.Host, unit, path string, limit time.Duration) error {
	err := wait.Poll(ctx, limit, 500*time.Millisecond, func() error {
		res, err := h.Run(ctx, "if test -s "+ssh.ShellQuote(path)+"; then echo ready; fi", ssh.ReadOnly())
		if err != nil {
			return err
		}
		if !strings.Contains(string(res.Stdout), "ready") {
			return fmt.Errorf("%s is not written yet", path)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s did not write %s within %s; its journal ends:\n%s", unit, path, limit, JournalTail(ctx, h, unit))
	}
	return err
}

// HealthProbe asks a health endpoint on a host through its SSH connection: nothing but SSH is opened to the host.
type HealthProbe struct {
	client *http.Client
	url    string
	want   string
}

// NewHealthProbe probes scheme://addr/path, which must answer 200 with a body containing want; cfg is the TLS
// configuration for https (nil for plain http).
func NewHealthProbe(h ssh.Host, scheme, addr, path, want string, cfg *tls.Config) *HealthProbe {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return h.Dial(ctx, "tcp", addr) },
	}
	if cfg != nil {
		host, _, _ := net.SplitHostPort(addr)
		transport.TLSClientConfig = cfg.Clone()
		transport.TLSClientConfig.ServerName = host
	}
	return &HealthProbe{client: &http.Client{Timeout: 5 * time.Second, Transport: transport}, url: scheme + "://" + addr + path, want: want}
}

// Check succeeds when the endpoint answers 200 with a body containing the wanted text.
func (p *HealthProbe) Check(ctx context.Context) error {
	_, err := p.Get(ctx)
	return err
}

// Get is the endpoint's body when it answers 200 with a body containing the wanted text.
func (p *HealthProbe) Get(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && strings.Contains(string(body), p.want) {
		return string(body), nil
	}
	return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 4096)])))
}

// URL is what the probe asks.
func (p *HealthProbe) URL() string { return p.url }

// Close releases the probe's connections.
func (p *HealthProbe) Close() { p.client.CloseIdleConnections() }
