package phases

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
)

func kubeconfigPhase(o *InstallOptions) workflow.Phase {
	return workflow.Phase{Name: "kubeconfig", Short: "Write the admin kubeconfig (0600): the control-plane endpoint, and a context per control plane",
		Run: func(ctx context.Context, r *workflow.Run) error {
			out := ""
			if o != nil {
				out = o.KubeconfigOut
			}
			return writeAdminKubeconfig(ctx, r, out)
		}}
}

// writeAdminKubeconfig writes the admin kubeconfig (AdminKubeconfig) to --kubeconfig-out (by default
// "kubeconfig" next to the state directory, that is next to cluster.yaml).
func writeAdminKubeconfig(ctx context.Context, r *workflow.Run, out string) error {
	if out == "" {
		out = filepath.Join(filepath.Dir(r.Cluster.Spec.StateDir), "kubeconfig")
	}
	if !r.Wet("", "write the admin kubeconfig to "+out+" (0600)") {
		return nil
	}
	data, current, err := AdminKubeconfig(ctx, r.Cluster, "admin")
	if err != nil {
		return err
	}
	if current != "" {
		r.Warn("", "the control-plane endpoint "+r.Cluster.Spec.ControlPlaneEndpoint+" does not answer: the kubeconfig's current context is "+current+"'s")
	}
	if old, err := os.ReadFile(out); err == nil && string(old) == string(data) {
		return nil
	}
	if err := atomicfile.Write(out, data, 0o600); err != nil {
		return err
	}
	r.Changed("", "wrote "+out)
	return nil
}

// AdminKubeconfig is the state directory's kubeconfig name ("admin", "super-admin") with a context per
// control plane besides the endpoint's. With the endpoint defaulted to the first control plane (no load
// balancer or VIP of the user's), a first control plane that does not answer /readyz from here makes the
// first one that does the current context, which it returns; kubectl has no failover of its own.
func AdminKubeconfig(ctx context.Context, c *api.Cluster, name string) ([]byte, string, error) {
	path := PKIStore(c).KubeconfigPath(name)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	cps := c.Spec.HostsWithRole(api.RoleControlPlane)
	if len(cps) < 2 {
		return data, "", nil
	}
	var endpoints []pki.Endpoint
	for _, h := range cps {
		endpoints = append(endpoints, pki.Endpoint{Name: h.Name, Server: "https://" + net.JoinHostPort(h.Address, strconv.Itoa(api.DefaultAPIServerPort))})
	}
	current := ""
	if c.Spec.ControlPlaneEndpoint == net.JoinHostPort(cps[0].Address, strconv.Itoa(api.DefaultAPIServerPort)) {
		current = firstReady(ctx, path, endpoints)
	}
	out, err := pki.WithEndpoints(data, endpoints, current)
	return out, current, err
}

// firstReady is the first endpoint whose /readyz answers with the kubeconfig's credentials, "" when the first
// one does or none does.
func firstReady(ctx context.Context, kubeconfig string, endpoints []pki.Endpoint) string {
	cert, ca, err := pki.Credentials(kubeconfig)
	if err != nil {
		return ""
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}}
	for i, e := range endpoints {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.Server+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusOK {
			if i == 0 {
				return ""
			}
			return e.Name
		}
	}
	return ""
}
