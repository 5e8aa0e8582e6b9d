package phases

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// UpgradePlan reads what every host runs (one read-only command each) and plans the upgrade to
// spec.kubernetesVersion with the bundle of cluster.yaml.
func UpgradePlan(ctx context.Context, c *api.Cluster, connect func(context.Context, api.Host) (ssh.Host, error), batchPercent int) (upgrade.Plan, error) {
	m, err := verifiedManifest(c.Spec.Bundle.Path, filepath.Join(c.Spec.StateDir, "bundle"))
	if err != nil {
		return upgrade.Plan{}, err
	}
	hosts := c.Spec.Hosts
	installed := make([]upgrade.Installed, len(hosts))
	errs := parallel.ForEach(ctx, len(hosts), c.Spec.SSH.Concurrency, func(i int) error {
		h, err := connect(ctx, hosts[i])
		if err != nil {
			return err
		}
		defer h.Close()
		installed[i], err = installedVersions(ctx, h)
		if err != nil {
			return fmt.Errorf("%s: %w", hosts[i].Name, err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return upgrade.Plan{}, err
	}
	byHost := map[string]upgrade.Installed{}
	for i, h := range hosts {
		byHost[h.Name] = installed[i]
	}
	return upgrade.Make(c, byHost, m, batchPercent), nil
}

// installedVersions reads the version of each binary an upgrade replaces from its active link
// (/usr/local/bin/NAME -> /opt/privcloud/NAME/VERSION/NAME).
func installedVersions(ctx context.Context, h ssh.Host) (upgrade.Installed, error) {
	names := slices.Concat(upgrade.ControlPlaneComponents, upgrade.NodeComponents, upgrade.EtcdComponents)
	res, err := h.Run(ctx, `for b in `+strings.Join(names, " ")+`; do printf '%s %s\n' "$b" "$(readlink /usr/local/bin/$b 2>/dev/null)"; done`, ssh.ReadOnly())
	if err != nil {
		return nil, err
	}
	out := upgrade.Installed{}
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		name, target, _ := strings.Cut(line, " ")
		// RemoteBinDir/NAME/VERSION/NAME: anything else was not installed by privcloud
		if dir, file := path.Split(target); file == name && path.Dir(path.Dir(dir)) == path.Join(RemoteBinDir, name) {
			out[name] = path.Base(dir)
		}
	}
	return out, nil
}
