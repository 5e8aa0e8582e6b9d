package phases

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
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
)

// hostFile is a file privcloud writes to a host: a unit, a configuration, a bootstrap file.
type hostFile struct {
	Path    string
	Content []byte
	Mode    os.FileMode
}

// ensureService writes a service's files and makes it run: it restarts the service only when a file changed,
// starts it when it is not running, and otherwise leaves it alone, so a converged host is not disturbed.
func ensureService(ctx context.Context, r *workflow.Run, t *workflow.Target, unit string, files ...hostFile) error {
	changed, err := writeFiles(ctx, r, t, files...)
	if err != nil {
		return err
	}
	// a converged host costs three quick queries: systemd reloads its units only when one changed (a reload
	// takes a few hundred milliseconds), or when an earlier run wrote a file and stopped before reloading
	script := fmt.Sprintf(`if [ "$(systemctl show -p NeedDaemonReload --value %[1]s)" = yes ]; then systemctl daemon-reload; fi
systemctl is-enabled -q %[1]s || systemctl enable -q %[1]s
if ! systemctl is-active -q %[1]s; then systemctl start %[1]s; echo started; fi`, unit)
	if changed {
		script = fmt.Sprintf("systemctl daemon-reload && systemctl enable -q %[1]s && systemctl restart %[1]s && echo restarted", unit)
	}
	res, err := t.Host.Run(ctx, script)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(res.Stdout)); s != "" {
		r.Changed(t.Spec.Name, unit+" "+s)
	}
	return nil
}

// writeFiles writes root-owned files to the host (atomically; unchanged ones are left alone), reports each one
// that changed, and says whether any did.
func writeFiles(ctx context.Context, r *workflow.Run, t *workflow.Target, files ...hostFile) (bool, error) {
	changed := false
	for _, f := range files {
		c, err := t.Host.Upload(ctx, ssh.Bytes(f.Content), f.Path, f.Mode, ssh.WithOwner("root:root"))
		if err != nil {
			return changed, err
		}
		if c {
			changed = true
			r.Changed(t.Spec.Name, f.Path)
		}
	}
	return changed, nil
}

// clientTLS is a TLS client configuration from files of the local PKI store: a CA to trust and a key pair
// to present.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
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

// waitHealthy polls https://addr/path on the host, through the SSH connection, until it answers 200 with a
// body containing want. When the limit passes, the error carries the end of the unit's journal.
func waitHealthy(ctx context.Context, t *workflow.Target, unit, addr, path, want string, cfg *tls.Config, limit time.Duration) error {
	p := newHealthProbe(t, "https", addr, path, want, cfg)
	defer p.close()
	err := wait.Poll(ctx, limit, 500*time.Millisecond, func() error { return p.check(ctx) })
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s not healthy after %s (%s: %v); its journal ends:\n%s", unit, limit, p.url, err, journalTail(ctx, t, unit))
	}
	return err
}

// journalTail is the end of a unit's journal on the host, for error messages.
func journalTail(ctx context.Context, t *workflow.Target, unit string) string {
	res, _ := t.Host.Run(ctx, "journalctl -u "+unit+" -n 25 --no-pager", ssh.ReadOnly())
	return string(res.Stdout)
}

// healthProbe asks a health endpoint on a host through its SSH connection: nothing but SSH is opened to the host.
type healthProbe struct {
	client *http.Client
	url    string
	want   string
}

// newHealthProbe probes scheme://addr/path, which must answer 200 with a body containing want; cfg is the TLS
// configuration for https (nil for plain http).
func newHealthProbe(t *workflow.Target, scheme, addr, path, want string, cfg *tls.Config) *healthProbe {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return t.Host.Dial(ctx, "tcp", addr) },
	}
	if cfg != nil {
		host, _, _ := net.SplitHostPort(addr)
		transport.TLSClientConfig = cfg.Clone()
		transport.TLSClientConfig.ServerName = host
	}
	return &healthProbe{client: &http.Client{Timeout: 5 * time.Second, Transport: transport}, url: scheme + "://" + addr + path, want: want}
}

func (p *healthProbe) check(ctx context.Context) error {
	_, err := p.get(ctx)
	return err
}

// get is the endpoint's body when it answers 200 with a body containing want.
func (p *healthProbe) get(ctx context.Context) (string, error) {
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

func (p *healthProbe) close() { p.client.CloseIdleConnections() }
