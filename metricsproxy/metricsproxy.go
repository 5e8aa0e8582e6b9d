// Package metricsproxy is each host's metrics endpoint: one TLS port on the host's address that serves the
// metrics of the components listening on its loopback (etcd, the controller-manager, the scheduler,
// kube-proxy, node-exporter, the API load balancer) to one client identity, and the expiry of the host's
// certificates. The components stay bound to 127.0.0.1, as the CIS benchmark asks; Prometheus reaches them
// with a client certificate that opens nothing else (docs/monitoring.md says why this is not kube-rbac-proxy).
package metricsproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/privcloud/privcloud/pki"
)

// Config is the endpoint's configuration file, written by privcloud on every host.
type Config struct {
	// Listen is the host's address and the metrics port (10.0.0.11:10290).
	Listen string `json:"listen"`
	// Clients are the certificate common names allowed in; every other verified client gets 403.
	Clients []string `json:"clients"`
	// Routes maps a name, served at /metrics/NAME, to a loopback URL.
	Routes map[string]string `json:"routes"`
	// CertificateDirs are searched for *.crt files whose expiry /metrics/certificates reports.
	CertificateDirs []string `json:"certificateDirs,omitempty"`
}

// LoadConfig reads and checks the configuration file: every route must lead to the loopback, so that the
// endpoint can never be turned into a proxy to elsewhere.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return nil, fmt.Errorf("%s: listen: %w", path, err)
	}
	if len(c.Clients) == 0 {
		return nil, fmt.Errorf("%s: clients: at least one client name is needed", path)
	}
	for name, u := range c.Routes {
		if err := checkRoute(name, u); err != nil {
			return nil, fmt.Errorf("%s: routes: %w", path, err)
		}
	}
	return &c, nil
}

func checkRoute(name, raw string) error {
	if name == "" || strings.ContainsAny(name, "/?#") || name == CertificatesRoute {
		return fmt.Errorf("%q is not a route name", name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: %q is not an http or https URL", name, raw)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: %q is not on the loopback", name, raw)
	}
	return nil
}

// CertificatesRoute serves the expiry of the host's certificates.
const CertificatesRoute = "certificates"

// Credentials are the endpoint's certificate (it serves with it and shows it to HTTPS components, which
// authorize its name to read /metrics) and the CA its clients' certificates must chain to.
type Credentials struct {
	Cert     tls.Certificate
	ClientCA *x509.CertPool
}

// LoadCredentials reads the PEM files of the credentials.
func LoadCredentials(caFile, certFile, keyFile string) (*Credentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	return &Credentials{Cert: cert, ClientCA: pool}, nil
}

// Handler serves /metrics/NAME for each route and /metrics/certificates to the allowed clients.
func Handler(c *Config, creds *Credentials) http.Handler {
	upstream := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		// the components behind HTTPS routes (the controller-manager, the scheduler) serve a certificate they
		// made for themselves on the loopback, which no CA vouches for; the route only ever leads to the
		// loopback (LoadConfig), where nothing but the host's own processes listen
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{creds.Cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute,
	}}
	mux := http.NewServeMux()
	for name, target := range c.Routes {
		mux.HandleFunc("GET /metrics/"+name, func(w http.ResponseWriter, r *http.Request) {
			relay(w, r, upstream, target)
		})
	}
	mux.HandleFunc("GET /metrics/"+CertificatesRoute, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = io.WriteString(w, CertificateMetrics(c.CertificateDirs))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		names := []string{CertificatesRoute}
		for name := range c.Routes {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "routes: /metrics/%s\n", strings.Join(names, " /metrics/"))
	})
	return authorize(c.Clients, mux)
}

// authorize lets in only the clients named: TLS has already verified their certificate against the CA.
func authorize(clients []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "a client certificate is needed", http.StatusUnauthorized)
			return
		}
		if cn := r.TLS.VerifiedChains[0][0].Subject.CommonName; !slices.Contains(clients, cn) {
			http.Error(w, fmt.Sprintf("%q may not read metrics here", cn), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// relay streams one scrape of target, keeping the format the scraper asked for.
func relay(w http.ResponseWriter, r *http.Request, c *http.Client, target string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, h := range []string{"Accept", "Accept-Encoding", "X-Prometheus-Scrape-Timeout-Seconds"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		// the component is down: the scrape fails, and Prometheus's up says so
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Content-Encoding"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// CertificateMetrics is the expiry of every certificate file under dirs, in Prometheus's text format: a
// certificate that nothing renews shows up days before it stops a component.
func CertificateMetrics(dirs []string) string {
	var b strings.Builder
	b.WriteString("# HELP privcloud_certificate_expiry_timestamp_seconds When the certificate in a host's file expires (Unix time).\n")
	b.WriteString("# TYPE privcloud_certificate_expiry_timestamp_seconds gauge\n")
	unreadable := 0
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".crt") {
				return nil
			}
			data, err := os.ReadFile(path)
			var certs []*x509.Certificate
			if err == nil {
				certs, err = pki.ParseCerts(data)
			}
			if err != nil {
				unreadable++
				return nil
			}
			// a file may hold several (a CA and the one it replaces): each gets a series
			for _, c := range certs {
				fmt.Fprintf(&b, "privcloud_certificate_expiry_timestamp_seconds{file=%q,subject=%q,serial=%q} %d\n",
					path, c.Subject.CommonName, c.SerialNumber.Text(16), c.NotAfter.Unix())
			}
			return nil
		})
	}
	b.WriteString("# HELP privcloud_certificate_files_unreadable Certificate files that could not be read or parsed.\n")
	b.WriteString("# TYPE privcloud_certificate_files_unreadable gauge\n")
	fmt.Fprintf(&b, "privcloud_certificate_files_unreadable %d\n", unreadable)
	return b.String()
}

// Serve serves h on l over TLS, asking every client for a certificate that chains to the CA.
func Serve(ctx context.Context, l net.Listener, creds *Credentials, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{creds.Cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: creds.ClientCA,
		MinVersion: tls.VersionTLS12,
	}}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	err := srv.ServeTLS(l, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
