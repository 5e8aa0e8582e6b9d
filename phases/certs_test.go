package phases

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// fakeCluster is the example cluster with its state in a temporary folder and fake hosts behind Connect.
func fakeCluster(t *testing.T) (*api.Cluster, map[string]*sshtest.Fake, Execution, *bytes.Buffer) {
	t.Helper()
	c := api.Example()
	c.Spec.StateDir = t.TempDir()
	hosts := map[string]*sshtest.Fake{}
	for _, h := range c.Spec.Hosts {
		hosts[h.Name] = sshtest.NewFake(h.Name)
	}
	var out bytes.Buffer
	ex := Execution{Reporter: report.New(&out, report.JSON), Connect: func(_ context.Context, h api.Host) (ssh.Host, error) {
		return hosts[h.Name], nil
	}}
	return c, hosts, ex, &out
}

func TestCertsPhasesDistributePerRole(t *testing.T) {
	c, hosts, ex, _ := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"certs"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	cp, w := hosts["cp1"], hosts["worker1"]
	for _, p := range []string{"/etc/kubernetes/pki/ca.key", "/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/etcd/server.key", "/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf"} {
		if _, _, ok := cp.File(p); !ok {
			t.Errorf("control plane lacks %s", p)
		}
	}
	var workerFiles []string
	for _, f := range w.Files() {
		if !strings.HasPrefix(f, workflow.RecordDir) {
			workerFiles = append(workerFiles, f)
		}
	}
	if strings.Join(workerFiles, " ") != "/etc/kubernetes/flannel.conf /etc/kubernetes/kube-proxy.conf /etc/kubernetes/kube-router.conf /etc/kubernetes/kubelet.conf /etc/kubernetes/multus.conf /etc/kubernetes/pki/api-lb.crt /etc/kubernetes/pki/api-lb.key /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/kubelet.crt /etc/kubernetes/pki/kubelet.key" {
		t.Errorf("worker received %v", workerFiles)
	}
	local, _ := os.ReadFile(filepath.Join(c.Spec.StateDir, "kubeconfig", "kubelet-worker1.conf"))
	if data, mode, _ := w.File("/etc/kubernetes/kubelet.conf"); !bytes.Equal(data, local) || mode != 0o600 {
		t.Errorf("worker1's kubelet.conf is not its own, or mode %o", mode)
	}
}

func TestRenewRestartsOnlyWhatChanged(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"certs"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	ex.Selection = workflow.Selection{}
	if err := Execute(context.Background(), RenewCerts([]string{"apiserver"}), c, ex); err != nil {
		t.Fatal(err)
	}
	// the services owed a restart are looked at (a running one restarts in its turn, behind its gate; these
	// fakes run none, so they would start with the new files)
	looked := func(h *sshtest.Fake) []string {
		var units []string
		for _, cmd := range h.Commands() {
			if strings.HasPrefix(cmd, "systemctl show -p NRestarts") {
				f := strings.Fields(strings.Split(cmd, "\n")[0])
				units = append(units, f[len(f)-1])
			}
		}
		return units
	}
	if cp := looked(hosts["cp1"]); !slices.Equal(cp, []string{"kube-apiserver"}) {
		t.Errorf("cp1 looked at %q for a restart, want kube-apiserver only", cp)
	}
	if w := looked(hosts["worker1"]); len(w) != 0 {
		t.Errorf("a worker looked at %q though none of its files changed", w)
	}
	// nothing to renew, nothing to send, nothing to restart
	out.Reset()
	if err := Execute(context.Background(), Init(), c, Execution{Reporter: ex.Reporter, Connect: ex.Connect, Selection: workflow.Selection{Only: []string{"certs"}}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"changed":0`) {
		t.Errorf("a converged run must report 0 changed:\n%s", out.String())
	}
}

func TestCertsDryRunWritesNothing(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	ex.DryRun = true
	ex.Selection = workflow.Selection{Only: []string{"certs"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(c.Spec.StateDir); len(entries) != 0 {
		t.Errorf("dry run wrote the local store: %v", entries)
	}
	for name, h := range hosts {
		if files := h.Files(); len(files) != 0 {
			t.Errorf("dry run wrote to %s: %v", name, files)
		}
	}
	if !strings.Contains(out.String(), "would be apiserver/cp1 created") {
		t.Errorf("dry run does not say what it would create:\n%s", out.String())
	}
}

// A dry run shows that a secret file would change, never its content: not in JSON, not in verbose text.
func TestDryRunNeverPrintsKeyMaterial(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"certs"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	cp := hosts["cp1"]
	stale := "-----BEGIN EC PRIVATE KEY-----\nT0xELUtFWS1NQVRFUklBTA==\n-----END EC PRIVATE KEY-----\n"
	cp.SetFile("/etc/kubernetes/pki/apiserver.key", []byte(stale), 0o600)
	cp.SetFile("/etc/kubernetes/admin.conf", []byte("users:\n- user:\n    client-key-data: T0xELUFETUlOLUtFWQ==\n"), 0o600)
	for _, format := range []report.Format{report.JSON, report.Text} {
		out.Reset()
		rep := report.New(out, format)
		rep.Verbose = true
		ex.Reporter, ex.DryRun = rep, true
		if err := Execute(context.Background(), Init(), c, ex); err != nil {
			t.Fatal(err)
		}
		got := out.String()
		if !strings.Contains(got, "/etc/kubernetes/pki/apiserver.key") || !strings.Contains(got, "secret content: not shown") {
			t.Errorf("%s: the changed key file is not reported as a secret change:\n%s", format, got)
		}
		for _, leak := range []string{"PRIVATE KEY", "T0xELUtFWS1NQVRFUklBTA", "T0xELUFETUlOLUtFWQ", "client-key-data:"} {
			if strings.Contains(got, leak) {
				t.Errorf("%s output holds %q:\n%s", format, leak, got)
			}
		}
	}
}

// A lost state directory must not become a new cluster identity pushed over the running one.
func TestLostStateDirectoryDoesNotReplaceTheClusterIdentity(t *testing.T) {
	c, hosts, ex, _ := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"certs"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	trusted, _, _ := hosts["cp1"].File("/etc/kubernetes/pki/ca.crt")
	saPub, _, _ := hosts["cp1"].File("/etc/kubernetes/pki/sa.pub")

	// the state directory is gone (moved, a fresh CI workspace): a new one would hold new CAs
	lost := c.Spec.StateDir
	c.Spec.StateDir = t.TempDir()
	err := Execute(context.Background(), Init(), c, ex)
	var ie *IdentityError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.Spec.StateDir) || !strings.Contains(err.Error(), "--replace-pki") {
		t.Fatalf("want an IdentityError naming the state directory and --replace-pki, got %v", err)
	}
	if entries, _ := os.ReadDir(c.Spec.StateDir); len(entries) != 0 {
		t.Errorf("the state directory received %d entries: nothing may be generated before the check", len(entries))
	}
	for name, h := range hosts {
		if got, _, _ := h.File("/etc/kubernetes/pki/ca.crt"); !bytes.Equal(got, trusted) {
			t.Errorf("%s: its CA was replaced", name)
		}
	}
	if got, _, _ := hosts["cp1"].File("/etc/kubernetes/pki/sa.pub"); !bytes.Equal(got, saPub) {
		t.Error("the service-account key was replaced")
	}

	// another cluster's state directory is refused the same way
	other, _, otherEx, _ := fakeCluster(t)
	otherEx.Selection = ex.Selection
	if err := Execute(context.Background(), Init(), other, otherEx); err != nil {
		t.Fatal(err)
	}
	c.Spec.StateDir = other.Spec.StateDir
	if err := Execute(context.Background(), Init(), c, ex); !errors.As(err, &ie) || len(ie.LocalKeys) == 0 {
		t.Fatalf("another cluster's CA: want an IdentityError with both fingerprints, got %v", err)
	}

	// the state directory back: converges; and with --replace-pki, rebuilt hosts take the new identity
	c.Spec.StateDir = lost
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatalf("with its own state directory: %v", err)
	}
	c.Spec.StateDir = other.Spec.StateDir
	if err := Execute(context.Background(), InitWith(&InstallOptions{ReplacePKI: true}), c, ex); err != nil {
		t.Fatalf("--replace-pki: %v", err)
	}
	if got, _, _ := hosts["worker1"].File("/etc/kubernetes/pki/ca.crt"); bytes.Equal(got, trusted) {
		t.Error("--replace-pki did not send the new CA")
	}
}
