package phases

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
)

// Multus's configuration wraps the pod network's as its one delegate, with the same CNI version, its plugins'
// capabilities and privcloud's kubeconfig, on every node; with Multus off, the network phase removes it.
func TestNetworkPhaseWrapsThePodNetworkInMultus(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	for _, f := range hosts {
		f.OnCommandFunc("if test -s '/run/flannel/subnet.env'", func(string) (ssh.Result, error) { return ssh.Result{Stdout: []byte("ready\n")}, nil })
	}
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		primary, _, _ := f.File(cniConfig)
		conf, mode, ok := f.File(multusConfig)
		if !ok || mode != 0o644 {
			t.Fatalf("%s: no Multus configuration (%o)", name, mode)
		}
		var got struct {
			CNIVersion string `json:"cniVersion"`
			Name       string `json:"name"`
			Plugins    []struct {
				Type         string            `json:"type"`
				Kubeconfig   string            `json:"kubeconfig"`
				Capabilities map[string]bool   `json:"capabilities"`
				Delegates    []json.RawMessage `json:"delegates"`
			} `json:"plugins"`
		}
		if err := json.Unmarshal(conf, &got); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, conf)
		}
		var want, delegate any
		json.Unmarshal(primary, &want)
		if len(got.Plugins) != 1 || len(got.Plugins[0].Delegates) != 1 {
			t.Fatalf("%s: Multus's configuration has not one plugin with one delegate:\n%s", name, conf)
		}
		p := got.Plugins[0]
		json.Unmarshal(p.Delegates[0], &delegate)
		if got.CNIVersion != "0.4.0" || p.Type != "multus" || p.Kubeconfig != "/etc/kubernetes/multus.conf" || !p.Capabilities["portMappings"] || !reflect.DeepEqual(delegate, want) {
			t.Errorf("%s: Multus's configuration does not wrap the pod network's:\n%s\npod network:\n%s", name, conf, primary)
		}
		if multusConfig >= cniConfig {
			t.Errorf("containerd takes the first configuration by name: %s must sort before %s", multusConfig, cniConfig)
		}
	}
	off := false
	c.Spec.Addons.Multus.Enabled = &off
	if err := runPhases(t, Init(), c, ex, out, "network"); err != nil {
		t.Fatal(err)
	}
	for name, f := range hosts {
		if len(commandsLike(f, removeFileScript(multusConfig))) != 1 {
			t.Errorf("%s: with Multus off its configuration is not removed: %q", name, f.Commands())
		}
	}
}

func TestRemoveFileScript(t *testing.T) {
	state := t.TempDir()
	file := filepath.Join(state, "00 conf's")
	os.WriteFile(file, []byte("{}"), 0o644)
	stubs := map[string]string{"rm": realTool(t, "rm") + ` "$@"`}
	if got := runStubbed(t, state, removeFileScript(file), stubs); strings.TrimSpace(got) != "removed "+file {
		t.Errorf("removing prints %q", got)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the file is still there: %v", err)
	}
	if got := runStubbed(t, state, removeFileScript(file), stubs); got != "" || !slices.Equal(calls(state), []string{"rm -f " + file}) {
		t.Errorf("a missing file: printed %q, calls %q", got, calls(state))
	}
}

// 'addons apply' refuses hosts that init has not set up for an add-on's node-side part, naming them: Multus's
// networks would never be attached there, Prometheus's targets there would all be down.
func TestAddonsApplyNeedsHostsSetUp(t *testing.T) {
	const dropIn = "/etc/containerd/conf.d/privcloud.toml"
	for _, tc := range []struct {
		addon, cmd, path string
		content          string // what a host set up holds; "" when being there is enough
		enable           func(*api.Cluster)
		want             string
	}{
		{"multus", "test -e " + ssh.ShellQuote(multusConfig), multusConfig, "", func(*api.Cluster) {},
			"these nodes lack its configuration (" + multusConfig + "): worker1, worker2. Run 'privcloud init'"},
		{"monitoring", "test -e " + ssh.ShellQuote(metricsConfigPath), metricsConfigPath, "", func(c *api.Cluster) { c.Spec.Addons.Monitoring.Enabled = true },
			"cluster.yaml turns monitoring on, but these hosts lack its metrics endpoint (" + metricsConfigPath + "): worker1, worker2. Run 'privcloud init'"},
		{"kata", "grep -qF -- 'containerd.runtimes.kata]' " + dropIn, dropIn, "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata]\n",
			func(c *api.Cluster) { c.Spec.Containerd.Kata.Enabled = true },
			"cluster.yaml turns Kata on, but these nodes' containerd lacks its runtime (runtime kata in " + dropIn + "): worker1, worker2. Run 'privcloud init'"},
	} {
		t.Run(tc.addon, func(t *testing.T) {
			c, hosts, ex, out := fakeCluster(t)
			tc.enable(c)
			for _, f := range hosts {
				f.OnCommandFunc(tc.cmd, func(string) (ssh.Result, error) {
					if b, _, ok := f.File(tc.path); ok && strings.Contains(string(b), tc.content) {
						return ssh.Result{Stdout: []byte("yes\n")}, nil
					}
					return ssh.Result{}, nil
				})
				if tc.content != "" {
					f.SetFile(tc.path, []byte("# another configuration\n"), 0o644) // present, but not set up
				}
			}
			hosts["cp1"].SetFile(tc.path, []byte(tc.content), 0o644)
			wf := workflow.Workflow{Name: "addons apply", Phases: []workflow.Phase{connect(), addonPhases(preparedBundle(t), &AddonOptions{})}}
			err := runPhases(t, wf, c, ex, out, "addons/"+tc.addon)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v", err)
			}
			for _, f := range hosts {
				f.SetFile(tc.path, []byte(tc.content), 0o644)
			}
			out.Reset()
			if err := runPhases(t, wf, c, ex, out, "addons/"+tc.addon); err != nil && strings.Contains(err.Error(), "these ") {
				t.Errorf("hosts set up refused: %v", err)
			}
		})
	}
}

// A bundle without Multus's plugin stops the network phase on the node, saying what to do, before any
// configuration names a plugin that is not there; flanneld's and the plugin's presence cost one command.
func TestNetworkPhaseNeedsMultusInTheBundle(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	for _, f := range hosts {
		f.OnCommandFunc("if test -s '/run/flannel/subnet.env'", func(string) (ssh.Result, error) { return ssh.Result{Stdout: []byte("ready\n")}, nil })
	}
	w := hosts["worker1"]
	w.OnCommand("test -x /usr/local/bin/flanneld || echo flanneld; test -x /opt/cni/bin/multus || echo cni-multus", ssh.Result{Stdout: []byte("cni-multus\n")}, nil)
	err := runPhases(t, Init(), c, ex, out, "network")
	if err == nil || !strings.Contains(err.Error(), "the bundle has no cni-multus component") || !strings.Contains(err.Error(), "set spec.addons.multus.enabled: false") {
		t.Fatalf("got %v", err)
	}
	if _, _, ok := w.File(multusConfig); ok {
		t.Error("the configuration names a plugin the node lacks")
	}
}
