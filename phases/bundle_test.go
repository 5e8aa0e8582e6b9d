package phases

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	bundlebuild "github.com/privcloud/privcloud/bundle/build"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// smallBundle builds a bundle of two files and an image made of one of them, offline.
func smallBundle(t *testing.T, out string) *bundle.Manifest {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"common": "#!/bin/sh\necho everywhere\n", "tool": "#!/bin/sh\necho workers\n"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755)
	}
	b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "small"},
		Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{
			{Name: "common", Version: "1", File: filepath.Join(dir, "common")},
			{Name: "inner", Version: "1", File: filepath.Join(dir, "common"), ImageOnly: true},
			{Name: "tool", Version: "2", File: filepath.Join(dir, "tool"), Roles: []api.Role{api.RoleWorker}},
			{Name: "img", Version: "3", Image: &api.Image{Ref: "registry.local/img:3", FromBinary: []string{"common"}}},
			{Name: "quay", Version: "3.12", Image: &api.Image{Ref: "quay.io/projectquay/quay:3.12"}, Absent: "cannot be built here"},
		}}}
	m, err := (&bundlebuild.Builder{Cache: t.TempDir()}).Build(context.Background(), b, out)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBundlePhaseSendsEachHostItsShare(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "b.tar.zst")
	m := smallBundle(t, c.Spec.Bundle.Path)
	ex.Selection = workflow.Selection{Only: []string{"bundle"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	cp, w := hosts["cp1"], hosts["worker1"]
	common := RemotePath(*m.Find("common", ""))
	tool := RemotePath(*m.Find("tool", ""))
	if common != "/opt/privcloud/common/1/common" {
		t.Errorf("remote layout %s", common)
	}
	if _, _, ok := cp.File(common); !ok {
		t.Errorf("cp1 lacks %s", common)
	}
	for _, f := range cp.Files() {
		if strings.Contains(f, "img") {
			t.Errorf("an image was copied as a file (%s): images are streamed into containerd", f)
		}
	}
	if _, _, ok := cp.File(tool); ok {
		t.Error("the control plane received a workers-only component")
	}
	if _, _, ok := cp.File(RemotePath(*m.Find("inner", ""))); ok {
		t.Error("an image-only binary was installed on a host")
	}
	links := strings.Join(cp.Commands(), "\n")
	if !strings.Contains(links, "ln -sfn '/opt/privcloud/common/1/common' '/usr/local/bin/common'.privcloud") || strings.Contains(links, "/usr/local/bin/inner") {
		t.Errorf("the active version must be linked on PATH, image-only binaries not at all:\n%s", links)
	}
	data, mode, ok := w.File(tool)
	if !ok || mode != 0o755 || !strings.Contains(string(data), "workers") {
		t.Errorf("worker's tool: %v %o %q", ok, mode, data)
	}
	if !strings.Contains(out.String(), "quay 3.12 is not in the bundle: cannot be built here") {
		t.Errorf("an absent component must be reported:\n%s", out.String())
	}
	out.Reset()
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"changed":0`) {
		t.Errorf("a second run must send nothing:\n%s", out.String())
	}
}

func TestBundlePhaseRefusesMissingOrBadBundles(t *testing.T) {
	c, _, ex, _ := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"bundle"}}
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "absent.tar.zst")
	err := Execute(context.Background(), Init(), c, ex)
	if err == nil || !strings.Contains(err.Error(), "does not exist: build it with 'privcloud bundle build'") {
		t.Errorf("missing bundle: %v", err)
	}
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "b.tar.zst")
	smallBundle(t, c.Spec.Bundle.Path)
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	// the bundle was verified once; replacing it (even by a file of the same name) makes it verified again
	os.WriteFile(c.Spec.Bundle.Path, []byte("not a bundle"), 0o644)
	if err := Execute(context.Background(), Init(), c, ex); err == nil || !strings.Contains(err.Error(), "not a privcloud bundle") {
		t.Errorf("a corrupt bundle must be refused before anything is sent: %v", err)
	}
}

func TestInitRefusesAHostOnAnotherVersion(t *testing.T) {
	m := &bundle.Manifest{Components: []bundle.Component{{Name: "etcd", Version: "v3.6.5", Kind: "binary"}}}
	h := sshtest.NewFake("h1")
	target := &workflow.Target{Spec: api.Host{Name: "h1"}, Host: h}
	h.OnCommand("if out=$(find", ssh.Result{Stdout: []byte("kube-apiserver /opt/privcloud/kube-apiserver/v1.37.1/kube-apiserver\netcd /opt/privcloud/etcd/v3.6.5/etcd\n")}, nil)
	if err := refuseVersionChange(context.Background(), target, m, "v1.37.1"); err != nil {
		t.Errorf("a host on the versions of cluster.yaml was refused: %v", err)
	}
	h.OnCommand("if out=$(find", ssh.Result{Stdout: []byte("kube-apiserver /opt/privcloud/kube-apiserver/v1.36.3/kube-apiserver\netcd /opt/privcloud/etcd/v3.6.4/etcd\n")}, nil)
	err := refuseVersionChange(context.Background(), target, m, "v1.37.1")
	if err == nil || !strings.Contains(err.Error(), "etcd v3.6.4 (not v3.6.5), kube-apiserver v1.36.3 (not v1.37.1)") || !strings.Contains(err.Error(), "privcloud upgrade apply") {
		t.Errorf("a host on older versions: %v", err)
	}
}

// init records the bundle it installs (a dry run does not); upgrade plan lists what the next bundle changes
// against that record.
func TestUpgradePlanShowsTheBundleChanges(t *testing.T) {
	c, hosts, ex, _ := fakeCluster(t)
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "b.tar.zst")
	installed := smallBundle(t, c.Spec.Bundle.Path)
	ex.Selection = workflow.Selection{Only: []string{"bundle"}}
	ex.DryRun = true
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	if m, err := appliedBundle(c.Spec.StateDir); err != nil || m != nil {
		t.Fatalf("a dry run recorded the bundle as installed: %v %v", m, err)
	}
	ex.DryRun = false
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	if m, err := appliedBundle(c.Spec.StateDir); err != nil || m == nil || len(m.Components) != len(installed.Components) {
		t.Fatalf("init did not record the bundle it installed: %v %v", m, err)
	}

	next := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "next"},
		Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{
			{Name: "common", Version: "2", File: "/bin/true"},
		}}}
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "next.tar.zst")
	if _, err := (&bundlebuild.Builder{Cache: t.TempDir()}).Build(context.Background(), next, c.Spec.Bundle.Path); err != nil {
		t.Fatal(err)
	}
	connect := func(_ context.Context, h api.Host) (ssh.Host, error) { return hosts[h.Name], nil }
	p, err := UpgradePlan(context.Background(), c, connect, 25)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range p.BundleChanges {
		got = append(got, ch.Name+" "+ch.Change+" "+ch.From+">"+ch.To)
	}
	want := []string{"common version 1>2", "img removed 3>", "inner removed 1>", "quay removed 3.12>", "tool removed 2>"}
	if p.BundleFrom != "small" || !slices.Equal(got, want) {
		t.Errorf("the plan's bundle changes against %q: %q, want %q", p.BundleFrom, got, want)
	}
}

// A new flanneld binary on a host where flanneld runs owes its unit a restart, which the restart phase at the
// end of the run makes; where the unit does not run (a first install), the link alone changes.
func TestNewNetworkBinaryRestartsItsUnit(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "flanneld"), []byte("#!/bin/sh\n"), 0o755)
	b := &api.Bundle{APIVersion: api.APIVersion, Kind: api.KindBundle, Metadata: api.ObjectMeta{Name: "net"},
		Spec: api.BundleSpec{Platform: "linux/amd64", Components: []api.Component{{Name: "flanneld", Version: "v0.28.10", File: filepath.Join(dir, "flanneld")}}}}
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "b.tar.zst")
	if _, err := (&bundlebuild.Builder{Cache: t.TempDir()}).Build(context.Background(), b, c.Spec.Bundle.Path); err != nil {
		t.Fatal(err)
	}
	running, fresh := hosts["worker1"], hosts["worker2"]
	running.OnCommand("set -e\nout=$(", ssh.Result{Stdout: []byte("/usr/local/bin/flanneld\nrestart:privcloud-flannel\n")}, nil)
	fresh.OnCommand("set -e\nout=$(", ssh.Result{Stdout: []byte("/usr/local/bin/flanneld\n")}, nil)
	running.OnCommand("if systemctl cat privcloud-flannel.service", ssh.Result{Stdout: []byte("privcloud-flannel:restarted\n")}, nil)
	ex.Selection = workflow.Selection{Only: []string{"bundle", "restart"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	link := commandsLike(running, "set -e\nout=$(")
	if len(link) != 1 || !strings.Contains(link[0], "if systemctl is-active -q privcloud-flannel; then echo restart:privcloud-flannel; fi") {
		t.Errorf("the link switch does not ask whether flanneld runs:\n%q", link)
	}
	if !slices.ContainsFunc(running.Commands(), func(c string) bool { return strings.Contains(c, "systemctl try-restart privcloud-flannel.service") }) ||
		!strings.Contains(out.String(), "privcloud-flannel restarted") {
		t.Errorf("flanneld was not restarted on its new binary:\n%q\n%s", running.Commands(), out)
	}
	if slices.ContainsFunc(fresh.Commands(), func(c string) bool { return strings.Contains(c, "try-restart") }) {
		t.Errorf("a host where flanneld does not run yet restarted it: %q", fresh.Commands())
	}
}

// The links are read in one command; a host whose links all point at the bundle's binaries gets no switch
// script, and one with a link elsewhere gets a script for that link alone.
func TestBundleSwitchesOnlyLinksThatDiffer(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "b.tar.zst")
	m := smallBundle(t, c.Spec.Bundle.Path)
	common, tool := RemotePath(*m.Find("common", "")), RemotePath(*m.Find("tool", ""))
	converged, stale := hosts["worker1"], hosts["worker2"]
	converged.OnCommand("if out=$(find", ssh.Result{Stdout: []byte("/usr/local/bin/common\t" + common + "\n/usr/local/bin/tool\t" + tool + "\n")}, nil)
	stale.OnCommand("if out=$(find", ssh.Result{Stdout: []byte("/usr/local/bin/common\t" + common + "\n/usr/local/bin/tool\t/opt/privcloud/tool/1/tool\n")}, nil)
	ex.Selection = workflow.Selection{Only: []string{"bundle"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got := commandsLike(converged, "set -e\n"); len(got) != 0 {
		t.Errorf("links in place, yet a switch script ran: %q", got)
	}
	got := commandsLike(stale, "set -e\n")
	if len(got) != 1 || !strings.Contains(got[0], "/usr/local/bin/tool") || strings.Contains(got[0], "/usr/local/bin/common") {
		t.Errorf("the stale host's switch script must name the tool link alone: %q", got)
	}
}
