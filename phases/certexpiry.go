package phases

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// HostExpiry is the expiry of a certificate or kubeconfig as deployed on a host; with no host and no path, of
// the entry in the local store.
type HostExpiry struct {
	Host string `json:"host,omitempty"`
	Path string `json:"path,omitempty"`
	pki.Expiry
	// RenewFrom is when privcloud runs start renewing it (spec.pki.renewBefore ahead of its end); leaves only.
	RenewFrom time.Time `json:"renewFrom,omitzero"`
}

// DeployedExpiry reads, over SSH, every certificate and kubeconfig each host should have, host by host in the
// order of cluster.yaml. A file that is not there is reported, not an error; a host that cannot be read is.
func DeployedExpiry(ctx context.Context, d *ssh.Dialer, c *api.Cluster, tree *pki.Tree) ([]HostExpiry, error) {
	store := PKIStore(c)
	perHost := make([][]HostExpiry, len(c.Spec.Hosts))
	errs := d.OnEach(ctx, c.Spec.Hosts, c.Spec.SSH.Concurrency, func(i int, cl *ssh.Client, err error) error {
		if err != nil {
			return err
		}
		h := c.Spec.Hosts[i]
		now := time.Now()
		for _, dep := range pki.Deployments(store, tree, h) {
			kind := "certificate"
			switch {
			case strings.HasSuffix(dep.Target, ".conf"):
				kind = "kubeconfig"
			case !strings.HasSuffix(dep.Target, ".crt"):
				continue // keys carry no expiry
			}
			row := HostExpiry{Host: h.Name, Path: dep.Target, Expiry: pki.Expiry{Name: dep.Entry, Kind: kind}}
			data, err := cl.ReadFile(ctx, dep.Target)
			switch {
			case errors.Is(err, os.ErrNotExist):
				row.Problem = "not deployed"
			case err != nil:
				return err
			case kind == "kubeconfig":
				row.Expiry = pki.KubeconfigExpiry(dep.Entry, data, now)
			default:
				row.FromPEM(data, now)
			}
			perHost[i] = append(perHost[i], row)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var rows []HostExpiry
	for _, r := range perHost {
		rows = append(rows, r...)
	}
	return rows, nil
}
