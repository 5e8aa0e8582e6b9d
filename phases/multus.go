package phases

import (
	"context"
	"encoding/json"
	"fmt"
	"path"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// multusConfig is Multus's CNI configuration. It sorts before the pod network's (cniConfig), so containerd hands
// every pod to Multus, which runs the pod network first and then the extra networks the pod's annotation
// names. Upstream's DaemonSet writes 00-multus.conf(list) and deletes it when its pod stops; privcloud's file
// has a name of its own, so a DaemonSet still stopping from an older install cannot remove it.
const multusConfig = "/etc/cni/net.d/00-privcloud-multus.conflist"

// multusComponent is the bundle component of Multus's thin plugin, installed as /opt/cni/bin/multus.
const multusComponent = "cni-multus"

// writeCNIConfig writes the pod network's CNI configuration and, when Multus is on, Multus's in front of it,
// Multus's first: a node must never start pods through the pod network alone while Multus is meant to attach
// their extra networks. With Multus off, its configuration is removed.
func writeCNIConfig(ctx context.Context, r *workflow.Run, t *workflow.Target, primary []byte) error {
	files := []hostops.File{{Path: cniConfig, Content: primary, Mode: 0o644}}
	if !r.Cluster.Spec.Addons.Multus.On() {
		if err := runScript(ctx, r, t, "remove Multus's CNI configuration", removeFileScript(multusConfig)); err != nil {
			return err
		}
		_, err := writeFiles(ctx, r, t, files...)
		return err
	}
	conf, err := multusConflist(primary)
	if err != nil {
		return err
	}
	files = append([]hostops.File{{Path: multusConfig, Content: conf, Mode: 0o644}}, files...)
	_, err = writeFiles(ctx, r, t, files...)
	return err
}

// multusConflist wraps the pod network's configuration as Multus's default network, as upstream's thin
// entrypoint does: the same CNI version, and the capabilities of the pod network's plugins (port mappings),
// which the runtime then passes to Multus and Multus on to them.
func multusConflist(primary []byte) ([]byte, error) {
	var p struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Capabilities map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(primary, &p); err != nil {
		return nil, fmt.Errorf("the pod network's CNI configuration: %w", err)
	}
	var delegate map[string]any
	if err := json.Unmarshal(primary, &delegate); err != nil {
		return nil, err
	}
	plugin := map[string]any{"type": "multus", "kubeconfig": path.Join(pki.RemoteConfDir, pki.MultusConf), "delegates": []any{delegate}}
	caps := map[string]bool{}
	for _, pl := range p.Plugins {
		for k, v := range pl.Capabilities {
			caps[k] = caps[k] || v
		}
	}
	if len(caps) > 0 {
		plugin["capabilities"] = caps
	}
	conf := map[string]any{"cniVersion": p.CNIVersion, "name": "multus-cni-network", "plugins": []any{plugin}}
	b, err := json.MarshalIndent(conf, "", "  ")
	return append(b, '\n'), err
}

// removeFileScript removes a file privcloud wrote, if it is there, and says so.
func removeFileScript(file string) string {
	q := ssh.ShellQuote(file)
	return fmt.Sprintf("if [ -e %[1]s ]; then rm -f %[1]s && echo %[2]s; fi", q, ssh.ShellQuote("removed "+file))
}

// multusOnNodes fails when a node lacks Multus's configuration, which the node phases of init and join write:
// the add-on's networks would be accepted and silently never attached there.
func multusOnNodes(ctx context.Context, r *workflow.Run) error {
	return requireOnHosts(ctx, r, r.TargetsFor(nodes), multusConfig, "Multus", "nodes lack its configuration")
}
