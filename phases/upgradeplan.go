package phases

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// UpgradePlan reads what every host runs (one read-only command each) and plans the upgrade to
// spec.kubernetesVersion with the bundle of cluster.yaml.
func UpgradePlan(ctx context.Context, c *api.Cluster, connect func(context.Context, api.Host) (ssh.Host, error), batchPercent int) (upgrade.Plan, error) {
	hosts := make([]ssh.Host, len(c.Spec.Hosts))
	defer func() {
		for _, h := range hosts {
			if h != nil {
				h.Close()
			}
		}
	}()
	errs := parallel.ForEach(ctx, len(hosts), c.Spec.SSH.Concurrency, func(i int) error {
		var err error
		hosts[i], err = connect(ctx, c.Spec.Hosts[i])
		return err
	})
	if err := errors.Join(errs...); err != nil {
		return upgrade.Plan{}, err
	}
	return planOn(ctx, c, hosts, batchPercent)
}

// installedVersions reads the version of each binary an upgrade replaces from its active link
// (/usr/local/bin/NAME -> /opt/privcloud/NAME/VERSION/NAME). A service still running another version than its
// link (a run that stopped between switching the link and restarting) counts as the version it runs, so the
// next run restarts it.
func installedVersions(ctx context.Context, h ssh.Host) (upgrade.Installed, error) {
	names := slices.Concat(upgrade.ControlPlaneComponents, upgrade.NodeComponents, upgrade.EtcdComponents)
	// the links first, then what the running services execute (one systemctl for all of them): a later line
	// of a binary overrides an earlier one
	links := make([]string, len(names))
	for i, n := range names {
		links[i] = path.Join("/usr/local/bin", n)
	}
	res, err := h.Run(ctx, hostops.LinkTargetsScript(links)+`
systemctl show -p Id -p MainPID `+strings.Join(names, " ")+` 2>/dev/null | while IFS='=' read -r k v; do
  case "$k" in Id) id=${v%.service} ;; MainPID) pid=$v ;; esac
  if [ -n "${id:-}" ] && [ -n "${pid:-}" ]; then
    if [ "$pid" != 0 ] && exe=$(readlink /proc/$pid/exe 2>/dev/null); then printf '%s - %s\n' "$id" "${exe% (deleted)}"; fi
    id= pid=
  fi
done`, ssh.ReadOnly())
	if err != nil {
		return nil, err
	}
	out := upgrade.Installed{}
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		f := strings.Fields(line) // a link's path and target, or a service's name, "-" and binary
		if len(f) < 2 {
			continue
		}
		if f[0] = path.Base(f[0]); !slices.Contains(names, f[0]) {
			continue // only the components asked about
		}
		if v := BinaryVersion(f[0], f[1]); v != "" {
			out[f[0]] = v
		}
		if len(f) > 2 {
			if v := BinaryVersion(f[0], f[2]); v != "" {
				out[f[0]] = v
			}
		}
	}
	return out, nil
}

// BinaryVersion is VERSION of RemoteBinDir/NAME/VERSION/NAME, or "" for a path privcloud did not install.
func BinaryVersion(name, target string) string {
	if dir, file := path.Split(target); file == name && path.Dir(path.Dir(dir)) == path.Join(RemoteBinDir, name) {
		return path.Base(dir)
	}
	return ""
}
