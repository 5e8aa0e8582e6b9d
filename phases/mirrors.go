package phases

import (
	"context"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/privcloud/privcloud/addons"
	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

// registryHostsDir is containerd's config_path (set in its drop-in): one folder per registry, read at each
// pull, so a changed mirror needs no containerd restart.
const registryHostsDir = "/etc/containerd/certs.d"

// registryHostsMarker starts every hosts.toml privcloud writes; files without it are the operator's and stay.
const registryHostsMarker = "# Written by privcloud"

// registryMirrors is the hosts.toml of every mirrored registry, keyed by registry host[:port]: the mirrors of
// containerd.registryMirrors and, when Quay is the cluster's registry, Quay itself reached through its
// NodePort on the node's own loopback (127.0.0.1 is in Quay's certificate, issued by the cluster CA), so
// images pushed to Quay pull on every node whether or not its hostname resolves there.
func registryMirrors(s api.ClusterSpec) map[string]templates.RegistryHosts {
	out := map[string]templates.RegistryHosts{}
	add := func(registry string, h templates.RegistryHost) {
		r, ok := out[registry]
		if !ok {
			r.Server = registryServer(registry)
		}
		r.Hosts = append(r.Hosts, h)
		out[registry] = r
	}
	if q := s.Addons.Quay; q.Enabled && q.UseAsMirror {
		add(q.Hostname, templates.RegistryHost{URL: "https://127.0.0.1:" + strconv.Itoa(addons.QuayNodePort),
			CA: path.Join(pki.RemotePKIDir, "ca.crt")})
	}
	for _, m := range s.Containerd.RegistryMirrors {
		for _, ep := range m.Endpoints {
			add(m.Registry, templates.RegistryHost{URL: ep})
		}
	}
	return out
}

// registryServer is a registry's own URL, which containerd falls back to after the mirrors.
func registryServer(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io" // docker.io's API lives elsewhere
	}
	return "https://" + registry
}

// writeRegistryMirrors writes one hosts.toml per mirrored registry and removes the ones privcloud wrote
// earlier for registries cluster.yaml no longer mirrors.
func writeRegistryMirrors(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	mirrors := registryMirrors(r.Cluster.Spec)
	keep := make([]string, 0, len(mirrors))
	for registry := range mirrors {
		keep = append(keep, registry)
	}
	sort.Strings(keep)
	var files []hostops.File
	for _, registry := range keep {
		content, err := templates.Render("containerd-hosts.toml", mirrors[registry])
		if err != nil {
			return err
		}
		files = append(files, hostops.File{Path: path.Join(registryHostsDir, registry, "hosts.toml"), Content: content, Mode: 0o644})
	}
	if _, err := writeFiles(ctx, r, t, files...); err != nil {
		return err
	}
	// registry names are validated host[:port] values: nothing in them the shell would expand
	script := `set -u
for f in ` + registryHostsDir + `/*/hosts.toml; do
  [ -f "$f" ] || continue
  d=${f%/hosts.toml}
  case " ` + strings.Join(keep, " ") + ` " in *" ${d##*/} "*) continue;; esac
  head -n1 "$f" | grep -q '^` + registryHostsMarker + `' || continue
  rm -f "$f" && rmdir "$d" 2>/dev/null; echo "removed $f"
done
true`
	return runScript(ctx, r, t, "remove registry mirrors cluster.yaml no longer declares", script)
}
