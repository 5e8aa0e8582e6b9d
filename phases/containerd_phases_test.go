package phases

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
)

const (
	pauseSHA   = "1111111111111111111111111111111111111111111111111111111111111111"
	corednsSHA = "2222222222222222222222222222222222222222222222222222222222222222"
)

// preparedBundle is a bundle already verified and unpacked to local: the containerd phases read only its
// manifest and, to import an image, its file.
func preparedBundle(t *testing.T) *bundleState {
	m := &bundle.Manifest{Name: "test", Components: []bundle.Component{
		{Name: "containerd", Version: "v2.2.1", Kind: "binary", Path: "bin/containerd/v2.2.1/containerd"},
		{Name: "pause", Version: "3.10", Kind: "image", ImageRef: "registry.k8s.io/pause:3.10.1", SHA256: pauseSHA, Path: "images/pause/3.10.tar"},
		{Name: "coredns", Version: "1.12.0", Kind: "image", ImageRef: "registry.k8s.io/coredns/coredns:v1.12.0", SHA256: corednsSHA,
			Path: "images/coredns/1.12.0.tar", Roles: []string{"worker"}},
	}}
	b := &bundleState{manifest: m, local: t.TempDir()}
	b.once.Do(func() {}) // prepared: prepare returns the manifest above
	for _, c := range m.Components {
		os.MkdirAll(filepath.Dir(b.LocalPath(c)), 0o755)
		os.WriteFile(b.LocalPath(c), []byte("not really an archive of "+c.Name), 0o644)
	}
	return b
}

func containerdWorkflow(b *bundleState) workflow.Workflow {
	return workflow.Workflow{Name: "init", Phases: []workflow.Phase{connect(), containerd(b)}}
}

var containerdFiles = []string{"/etc/systemd/system/containerd.service", "/etc/containerd/config.toml", "/etc/containerd/conf.d/privcloud.toml"}

// containerd/config writes the unit, a config.toml that imports conf.d and privcloud's drop-in on every node,
// restarts containerd once and waits until its API answers; a second run changes nothing.
func TestContainerdConfig(t *testing.T) {
	c, hosts, ex, out, svc := liveCluster(t)
	wf := containerdWorkflow(preparedBundle(t))
	if err := runPhases(t, wf, c, ex, out, "containerd/config"); err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Spec.Hosts {
		f := hosts[h.Name]
		for _, p := range containerdFiles {
			if _, mode, ok := f.File(p); !ok || mode != 0o644 {
				t.Errorf("%s: %s present %v, mode %o", h.Name, p, ok, mode)
			}
		}
		if got := restarts(f); !slices.Equal(got, []string{"containerd"}) {
			t.Errorf("%s restarted %q", h.Name, got)
		}
		if !slices.Contains(svc.containerd[h.Name].called(), "/containerd.services.version.v1.Version/Version") {
			t.Errorf("%s: the phase did not wait for containerd's API: %q", h.Name, svc.containerd[h.Name].called())
		}
	}
	f := hosts["worker1"]
	unit, _, _ := f.File("/etc/systemd/system/containerd.service")
	cfg, _, _ := f.File("/etc/containerd/config.toml")
	dropIn, _, _ := f.File("/etc/containerd/conf.d/privcloud.toml")
	for _, s := range []struct{ file, text, want string }{
		{"unit", string(unit), "containerd v2.2.1 from the air-gap bundle"},
		{"unit", string(unit), "ExecStart=/usr/local/bin/containerd\n"},
		{"unit", string(unit), "Delegate=yes\n"},
		{"unit", string(unit), "OOMScoreAdjust=-999\n"},
		{"config.toml", string(cfg), `imports = ["/etc/containerd/conf.d/*.toml"]`},
		{"drop-in", string(dropIn), `default_runtime_name = "` + c.Spec.Containerd.DefaultRuntime + `"`},
		{"drop-in", string(dropIn), `BinaryName = "/usr/local/bin/runc"`},
		{"drop-in", string(dropIn), "SystemdCgroup = true\n"},
		// the sandbox image is the bundle's, so pods start with nothing pulled
		{"drop-in", string(dropIn), `sandbox = "registry.k8s.io/pause:3.10.1"`},
		{"drop-in", string(dropIn), `config_path = "/etc/containerd/certs.d"`},
	} {
		if !strings.Contains(s.text, s.want) {
			t.Errorf("%s lacks %q:\n%s", s.file, s.want, s.text)
		}
	}
	if strings.Contains(string(dropIn), "kata") || strings.Contains(string(dropIn), "restrict_oom_score_adj") {
		t.Errorf("kata and restrict_oom_score_adj are off by default:\n%s", dropIn)
	}

	if err := runPhases(t, wf, c, ex, out, "containerd/config"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); len(got) != 0 || len(restarts(f)) != 1 {
		t.Errorf("a converged run changed %q, restarts %q", got, restarts(f))
	}
}

// Kata and restrictOOMScoreAdj rewrite the drop-in and the unit and restart containerd; registry mirrors
// are read at each pull, so a new mirror writes its hosts.toml and restarts nothing.
func TestContainerdSettingsAndMirrors(t *testing.T) {
	c, hosts, ex, out, _ := liveCluster(t)
	wf := containerdWorkflow(preparedBundle(t))
	if err := runPhases(t, wf, c, ex, out, "containerd/config"); err != nil {
		t.Fatal(err)
	}
	c.Spec.Containerd.Kata.Enabled = true
	c.Spec.Containerd.RestrictOOMScoreAdj = true
	if err := runPhases(t, wf, c, ex, out, "containerd/config"); err != nil {
		t.Fatal(err)
	}
	f := hosts["cp1"]
	dropIn, _, _ := f.File("/etc/containerd/conf.d/privcloud.toml")
	unit, _, _ := f.File("/etc/systemd/system/containerd.service")
	if !strings.Contains(string(dropIn), "runtimes."+c.Spec.Containerd.Kata.Handler+"]\n      runtime_type = \"io.containerd.kata.v2\"") ||
		!strings.Contains(string(dropIn), "restrict_oom_score_adj = true") {
		t.Errorf("drop-in with kata and restrictOOMScoreAdj:\n%s", dropIn)
	}
	if strings.Contains(string(unit), "OOMScoreAdjust=") {
		t.Errorf("a host that cannot lower OOM scores got OOMScoreAdjust:\n%s", unit)
	}
	if got := restarts(f); !slices.Equal(got, []string{"containerd", "containerd"}) {
		t.Errorf("restarts %q", got)
	}

	c.Spec.Containerd.RegistryMirrors = []api.RegistryMirror{{Registry: "docker.io", Endpoints: []string{"https://mirror.internal.example"}}}
	if err := runPhases(t, wf, c, ex, out, "containerd/config"); err != nil {
		t.Fatal(err)
	}
	hostsToml, mode, ok := f.File("/etc/containerd/certs.d/docker.io/hosts.toml")
	if !ok || mode != 0o644 || !strings.HasPrefix(string(hostsToml), registryHostsMarker) ||
		!strings.Contains(string(hostsToml), `server = "https://registry-1.docker.io"`) || !strings.Contains(string(hostsToml), `[host."https://mirror.internal.example"]`) {
		t.Errorf("hosts.toml (%v, %o):\n%s", ok, mode, hostsToml)
	}
	if got := restarts(f); len(got) != 2 {
		t.Errorf("a new mirror restarted containerd: %q", got)
	}
	sweep := commandsLike(f, "set -u\nfor f in /etc/containerd/certs.d/*/hosts.toml")
	if len(sweep) == 0 || !strings.Contains(sweep[len(sweep)-1], `case " docker.io " in`) ||
		!strings.Contains(sweep[len(sweep)-1], "grep -q '^"+registryHostsMarker+"' || continue") {
		t.Errorf("the sweep of dropped mirrors must keep docker.io and files privcloud did not write:\n%q", sweep)
	}
}

// containerd/images asks each host's containerd for the images its roles need and skips those imported from
// the same archive; a stale one is imported again (which the fake containerd cannot do: the import is
// attempted and fails, naming the image). The actual import needs a real containerd and is left to the e2e.
func TestContainerdImagesSkipsImported(t *testing.T) {
	c, _, ex, out, svc := liveCluster(t)
	wf := containerdWorkflow(preparedBundle(t))
	for _, h := range c.Spec.Hosts {
		svc.containerd[h.Name].images["registry.k8s.io/pause:3.10.1"] = map[string]string{archiveLabel: pauseSHA, pinnedLabel: pinned}
		svc.containerd[h.Name].images["registry.k8s.io/coredns/coredns:v1.12.0"] = map[string]string{archiveLabel: corednsSHA, pinnedLabel: pinned}
	}
	// imported before images were pinned: pinned now, so the kubelet's image garbage collection keeps it
	svc.containerd["cp1"].images["registry.k8s.io/pause:3.10.1"] = map[string]string{archiveLabel: pauseSHA}
	if err := runPhases(t, wf, c, ex, out, "containerd/images"); err != nil {
		t.Fatal(err)
	}
	if got := changes(t, out); !slices.Equal(got, []string{"containerd/images cp1 pinned registry.k8s.io/pause:3.10.1"}) {
		t.Errorf("every image is there from the same archive, one to pin: changes %q", got)
	}
	if l := svc.containerd["cp1"].images["registry.k8s.io/pause:3.10.1"]; l[pinnedLabel] != pinned || l[archiveLabel] != pauseSHA {
		t.Errorf("cp1's pause image labels: %v", l)
	}
	gets := func(host string) int {
		n := 0
		for _, call := range svc.containerd[host].called() {
			if call == "/containerd.services.images.v1.Images/Get" {
				n++
			}
		}
		return n
	}
	out.Reset()
	if err := runPhases(t, wf, c, ex, out, "containerd/images"); err != nil || len(changes(t, out)) != 0 {
		t.Errorf("a second run changed %q (%v)", changes(t, out), err)
	}
	if gets("cp1") != 2 || gets("worker1") != 4 {
		t.Errorf("image lookups: cp1 %d (pause), worker1 %d (pause, coredns)", gets("cp1"), gets("worker1"))
	}

	svc.containerd["worker2"].images["registry.k8s.io/coredns/coredns:v1.12.0"] = map[string]string{archiveLabel: "an older archive"}
	err := runPhases(t, wf, c, ex, out, "containerd/images")
	if err == nil || !strings.Contains(err.Error(), "worker2: image registry.k8s.io/coredns/coredns:v1.12.0: unknown service containerd.services") {
		t.Errorf("a stale image must be imported again: %v", err)
	}
	if e := final(t, out, "containerd/images", "worker1"); e.Status != report.OK {
		t.Errorf("worker1: %s", e.Status)
	}
}

// In a dry run the images phase cannot reach containerd (a dry run dials nothing): it plans every image the
// host's roles need.
func TestContainerdImagesDryRun(t *testing.T) {
	c, _, ex, out, _ := liveCluster(t)
	ex.DryRun = true
	if err := runPhases(t, containerdWorkflow(preparedBundle(t)), c, ex, out, "containerd/images"); err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, e := range events(t, out) {
		if e.Status == report.Planned && e.DurationMS == nil {
			planned = append(planned, e.Host+" "+e.Message)
		}
	}
	want := []string{"cp1 would run: import image registry.k8s.io/pause:3.10.1",
		"worker1 would run: import image registry.k8s.io/pause:3.10.1", "worker1 would run: import image registry.k8s.io/coredns/coredns:v1.12.0",
		"worker2 would run: import image registry.k8s.io/pause:3.10.1", "worker2 would run: import image registry.k8s.io/coredns/coredns:v1.12.0"}
	slices.Sort(planned)
	slices.Sort(want)
	if !slices.Equal(planned, want) {
		t.Errorf("planned\n%q\nwant\n%q", planned, want)
	}

	// CoreDNS off: its image stays out of every node until 'addons apply' turns it on
	off := false
	c.Spec.Addons.CoreDNS.Enabled = &off
	out.Reset()
	if err := runPhases(t, containerdWorkflow(preparedBundle(t)), c, ex, out, "containerd/images"); err != nil {
		t.Fatal(err)
	}
	planned = nil
	for _, e := range events(t, out) {
		if e.Status == report.Planned && e.DurationMS == nil {
			planned = append(planned, e.Host+" "+e.Message)
		}
	}
	slices.Sort(planned)
	want = []string{"cp1 would run: import image registry.k8s.io/pause:3.10.1",
		"worker1 would run: import image registry.k8s.io/pause:3.10.1", "worker2 would run: import image registry.k8s.io/pause:3.10.1"}
	if !slices.Equal(planned, want) {
		t.Errorf("with CoreDNS off, planned\n%q\nwant\n%q", planned, want)
	}
}

// 'addons apply' imports the images of enabled add-ons that nodes lack (init left out those of add-ons that
// were off), whatever add-on is named; a server dry run imports nothing.
func TestAddonsApplyImportsImages(t *testing.T) {
	c, _, ex, out, _ := liveCluster(t)
	ex.DryRun = true
	b := preparedBundle(t)
	wf := workflow.Workflow{Name: "addons apply", Phases: []workflow.Phase{connect(), addonImages(b, nil), addonPhases(b, nil)}}
	if err := runPhases(t, wf, c, ex, out, "addons/coredns"); err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, e := range events(t, out) {
		if e.Status == report.Planned && e.DurationMS == nil && e.Phase == "images" {
			planned = append(planned, e.Host+" "+e.Message)
		}
	}
	if !slices.Contains(planned, "worker1 would run: import image registry.k8s.io/coredns/coredns:v1.12.0") {
		t.Errorf("the images phase must run with any add-on named: planned %q", planned)
	}
	wf = workflow.Workflow{Name: "addons apply", Phases: []workflow.Phase{connect(), addonImages(b, &AddonOptions{ServerDryRun: true})}}
	if err := runPhases(t, wf, c, ex, out); err != nil {
		t.Fatal(err)
	}
	for _, e := range events(t, out) {
		if e.Phase == "images" && e.Status == report.Planned {
			t.Errorf("a server dry run must import nothing: %s %s", e.Host, e.Message)
		}
	}
}
