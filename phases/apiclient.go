package phases

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// apiClient talks to a control-plane host's kube-apiserver through the SSH connection (127.0.0.1:6443 on
// that host), verifying its certificate with the cluster CA and authenticating with a kubeconfig's client
// certificate. privcloud needs a handful of calls, so plain HTTPS serves them.
type apiClient struct {
	http *http.Client
}

func newAPIClient(h ssh.Host, kubeconfig string) (*apiClient, error) {
	cert, ca, err := pki.Credentials(kubeconfig)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s holds no CA certificate", kubeconfig)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return h.Dial(ctx, "tcp", "127.0.0.1:6443") },
	}
	return &apiClient{http: &http.Client{Transport: tr, Timeout: 15 * time.Second}}, nil
}

func (c *apiClient) close() { c.http.CloseIdleConnections() }

// do sends a request and decodes a JSON answer into out (when not nil); a status outside 2xx is an error
// carrying the API server's message.
func (c *apiClient) do(ctx context.Context, method, path, contentType string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "https://127.0.0.1:6443"+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var status struct{ Message string }
		json.Unmarshal(data, &status)
		return resp.StatusCode, fmt.Errorf("%s %s: %s %s", method, path, resp.Status, status.Message)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}

// apply server-side applies one object as field manager privcloud: re-applying an unchanged object changes
// nothing, and privcloud owns only the fields it sets.
func (c *apiClient) apply(ctx context.Context, path string, object any) (bool, error) {
	body, err := json.Marshal(object)
	if err != nil {
		return false, err
	}
	var before, after struct {
		Metadata struct{ ResourceVersion string } `json:"metadata"`
	}
	code, _ := c.do(ctx, http.MethodGet, path, "", nil, &before)
	if _, err := c.do(ctx, http.MethodPatch, path+"?fieldManager=privcloud&force=true", "application/apply-patch+yaml", body, &after); err != nil {
		return false, err
	}
	return code == http.StatusNotFound || before.Metadata.ResourceVersion != after.Metadata.ResourceVersion, nil
}

// waitLease waits until a leader-election lease in kube-system is held, which a controller-manager or
// scheduler takes once it runs and reaches the API server.
func (c *apiClient) waitLease(ctx context.Context, name string, limit time.Duration) (string, error) {
	var holder string
	err := poll(ctx, limit, time.Second, func() error {
		var lease struct {
			Spec struct {
				HolderIdentity string `json:"holderIdentity"`
			} `json:"spec"`
		}
		if _, err := c.do(ctx, http.MethodGet, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name, "", nil, &lease); err != nil {
			return err
		}
		if holder = lease.Spec.HolderIdentity; holder == "" {
			return errors.New("nobody holds it yet")
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return "", fmt.Errorf("no %s holds its lease after %s: %s", name, limit, strings.TrimSpace(err.Error()))
	}
	return holder, err
}
