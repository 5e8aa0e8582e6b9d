package phases

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/privcloud/privcloud/addons"
	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// The add-on phases apply through the API server with server-side apply, which the fake API server does not
// implement; without one they run as far as a dry run goes (render, plan every object, say what cannot run).
// Their manifests are pinned by the golden tests of package addons.
func addonsWorkflow(b *bundleState) workflow.Workflow {
	return workflow.Workflow{Name: "init", Phases: []workflow.Phase{connect(), addonPhases(b, nil)}}
}

// A dry run plans every object of each enabled add-on in apply order, skips disabled ones with the field to
// set, warns about add-ons whose images the bundle lacks, and writes nothing: not to hosts, not Quay's
// secrets to the state directory.
func TestAddonPhasesDryRun(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	for _, h := range hosts {
		h.SetFile(hostResolvConf, []byte("nameserver 192.168.10.1\n"), 0o644)
	}
	c.Spec.Addons.Quay.Enabled = true
	ex.DryRun = true
	if err := runPhases(t, addonsWorkflow(preparedBundle(t)), c, ex, out); err != nil {
		t.Fatal(err)
	}
	planned := map[string][]string{}
	var warnings []string
	for _, e := range events(t, out) {
		switch {
		case e.Status == report.Planned && e.DurationMS == nil:
			planned[e.Phase] = append(planned[e.Phase], strings.TrimPrefix(e.Message, "would run: apply "))
		case e.Status == report.Warning:
			warnings = append(warnings, e.Phase+": "+e.Message)
		}
	}
	wantCoreDNS := []string{"ServiceAccount kube-system/coredns", "ClusterRole system:coredns", "ClusterRoleBinding system:coredns",
		"ConfigMap kube-system/coredns", "Service kube-system/kube-dns", "Deployment kube-system/coredns"}
	if !slices.Equal(planned["addons/coredns"], wantCoreDNS) {
		t.Errorf("coredns plans %q, want %q", planned["addons/coredns"], wantCoreDNS)
	}
	// the CRD goes first: the objects of its kind cannot be applied before it
	if m := planned["addons/multus"]; len(m) == 0 || !strings.HasPrefix(m[0], "CustomResourceDefinition ") {
		t.Errorf("multus plans %q", m)
	}
	if q := planned["addons/quay"]; !slices.Contains(q, "Namespace quay") || !slices.ContainsFunc(q, func(s string) bool { return strings.HasPrefix(s, "Secret quay/") }) {
		t.Errorf("quay plans %q", q)
	}
	// Multus needs no image (its plugin is a binary on the nodes)
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "addons/quay: add-on quay cannot run: the bundle has no component") {
		t.Errorf("warnings %q: coredns's image is in the bundle and multus needs none, quay's are not", warnings)
	}
	if e := final(t, out, "addons/kata", ""); e.Status != report.Skipped || e.Message != "spec.containerd.kata.enabled is false in cluster.yaml" {
		t.Errorf("kata: %+v", e)
	}
	if _, err := os.Stat(filepath.Join(c.Spec.StateDir, "addons", "quay-secrets.json")); err == nil {
		t.Error("a dry run generated Quay's secrets")
	}
	for name, h := range hosts {
		if files := h.Files(); !slices.Equal(files, []string{hostResolvConf}) {
			t.Errorf("%s: the dry run wrote %q", name, files)
		}
		if cmds := h.Commands(); len(cmds) != 0 {
			t.Errorf("%s: the dry run ran %q", name, cmds)
		}
	}
}

// Where CoreDNS forwards outside names depends on the nodes' resolvers (what the kubelet gives pods), and an
// inconsistent cluster is refused rather than half-resolving.
func TestCorednsUpstreams(t *testing.T) {
	stub, real := "nameserver 127.0.0.53\n", "nameserver 192.168.10.1\n"
	for _, tc := range []struct {
		name       string
		configured []string
		resolv     map[string]string // host -> /etc/resolv.conf ("" for none)
		resolved   map[string]string // host -> systemd-resolved's file
		want       []string
		warn, err  string
	}{
		{name: "configured upstreams win", configured: []string{"10.0.0.53"}, want: []string{"10.0.0.53"}},
		{name: "every node has a resolver", resolv: map[string]string{"cp1": real, "worker1": real, "worker2": real}, want: []string{"/etc/resolv.conf"}},
		{name: "systemd-resolved behind its stub counts", resolv: map[string]string{"cp1": real, "worker1": stub, "worker2": real},
			resolved: map[string]string{"worker1": real}, want: []string{"/etc/resolv.conf"}},
		{name: "air-gapped: no resolver anywhere", resolv: map[string]string{"cp1": stub}, warn: "CoreDNS answers for the cluster only"},
		{name: "some nodes without", resolv: map[string]string{"cp1": real, "worker1": stub},
			err: "hosts cp1 have a nameserver in their resolv.conf and hosts worker1, worker2 have none reachable from pods: set spec.addons.coredns.upstreams"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := api.Example()
			c.Spec.Addons.CoreDNS.Upstreams = tc.configured
			var out bytes.Buffer
			r := &workflow.Run{Workflow: "init", Cluster: c, Reporter: report.New(&out, report.Text)}
			for _, h := range c.Spec.Hosts {
				f := sshtest.NewFake(h.Name)
				if s := tc.resolv[h.Name]; s != "" {
					f.SetFile(hostResolvConf, []byte(s), 0o644)
				}
				if s := tc.resolved[h.Name]; s != "" {
					f.SetFile(resolvedResolvConf, []byte(s), 0o644)
				}
				r.Targets = append(r.Targets, &workflow.Target{Spec: h, Host: f})
			}
			got, err := corednsUpstreams(context.Background(), r)
			switch {
			case tc.err != "":
				if err == nil || err.Error() != tc.err {
					t.Errorf("error %v, want %s", err, tc.err)
				}
			case err != nil || !slices.Equal(got, tc.want):
				t.Errorf("upstreams %q (%v), want %q", got, err, tc.want)
			}
			if warned := strings.Contains(out.String(), "WARNING"); warned != (tc.warn != "") || !strings.Contains(out.String(), tc.warn) {
				t.Errorf("warning %q, want %q", out.String(), tc.warn)
			}
		})
	}
}

// Quay's generated secrets are made once and kept owner-only in the state directory; its certificate comes
// from the cluster PKI, and without it the phase says how to make it.
func TestQuayState(t *testing.T) {
	c, _, ex, out := fakeCluster(t)
	c.Spec.Addons.Quay.Enabled = true
	r := &workflow.Run{Workflow: "init", Cluster: c, Reporter: report.New(out, report.Text)}
	if err := os.MkdirAll(filepath.Join(c.Spec.StateDir, "addons"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.Spec.StateDir, "addons", "quay-node"), []byte("worker1\n"), 0o600) // no API server to ask
	_, err := quayState(context.Background(), r)
	if err == nil || !strings.Contains(err.Error(), "Quay's certificate") || !strings.Contains(err.Error(), "run 'privcloud certs generate'") {
		t.Fatalf("without the PKI: %v", err)
	}
	file := filepath.Join(c.Spec.StateDir, "addons", "quay-secrets.json")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v, %v", fi, err)
	}
	first, _ := os.ReadFile(file)

	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	q, err := quayState(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(file)
	if !bytes.Equal(first, again) || q.Secrets.DatabasePassword == "" || q.Secrets.DatabasePassword == "(generated)" {
		t.Error("Quay's secrets changed between runs, or are placeholders")
	}
	if !bytes.Contains(q.TLSCert, []byte("BEGIN CERTIFICATE")) || !bytes.Contains(q.CACert, []byte("BEGIN CERTIFICATE")) || len(q.TLSKey) == 0 {
		t.Error("Quay's certificate, key or CA is missing")
	}
	if q.Node != "worker1" {
		t.Errorf("Quay's data lives on %s, want the first worker", q.Node)
	}
}

// Quay's hostPath data stays on the node recorded once Quay was applied, whatever happens to cluster.yaml's
// order; a change that would leave the data behind is refused, naming the record to edit. A plan records nothing.
func TestQuayKeepsItsNode(t *testing.T) {
	c, _, _, _ := fakeCluster(t) // cp1, worker1, worker2
	c.Spec.Addons.Quay.Enabled = true
	ctx := context.Background()
	record := filepath.Join(c.Spec.StateDir, "addons", "quay-node")
	plan := &workflow.Run{Cluster: c, DryRun: true}
	if node, err := quayNode(ctx, plan); err != nil || node != "worker1" {
		t.Fatalf("a first plan: %q, %v", node, err)
	}
	if err := recordQuayNode(ctx, plan, nil, &addons.Inputs{Quay: &addons.QuayState{Node: "worker1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(record); err == nil {
		t.Fatal("a plan recorded the node")
	}
	// applied once: the node the objects were made with is recorded, and a later apply keeps the record
	applied := &workflow.Run{Cluster: c}
	for _, node := range []string{"worker1", "worker2"} {
		if err := recordQuayNode(ctx, applied, nil, &addons.Inputs{Quay: &addons.QuayState{Node: node}}); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(record); err != nil || string(b) != "worker1\n" {
		t.Fatalf("record %q, %v", b, err)
	}
	c.Spec.Hosts[1], c.Spec.Hosts[2] = c.Spec.Hosts[2], c.Spec.Hosts[1] // worker2 listed first now
	r := &workflow.Run{Cluster: c}
	if node, err := quayNode(ctx, r); err != nil || node != "worker1" {
		t.Errorf("after reordering: %q, %v", node, err)
	}
	c.Spec.Hosts = slices.DeleteFunc(c.Spec.Hosts, func(h api.Host) bool { return h.Name == "worker1" })
	if _, err := quayNode(ctx, r); err == nil || !strings.Contains(err.Error(), "on node worker1 (recorded in "+record+"), which cluster.yaml no longer has") {
		t.Errorf("worker1 gone: %v", err)
	}
	c.Spec.Addons.Quay.StorageClass = "fast"
	if _, err := quayNode(ctx, r); err == nil || !strings.Contains(err.Error(), "spec.addons.quay.storageClass is fast, but Quay's data is in") {
		t.Errorf("storage class over hostPath data: %v", err)
	}
	os.Remove(record)
	if node, err := quayNode(ctx, r); err != nil || node != "" {
		t.Errorf("storage class: %q, %v", node, err)
	}
}
