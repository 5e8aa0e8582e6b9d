package phases

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// A dry run of the rotation plans its three stages and changes nothing: no record, no CA file.
func TestRotateCADryRunChangesNothing(t *testing.T) {
	c, _, ex, out := fakeCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	store := PKIStore(c)
	before, _ := os.ReadFile(store.CertPath(pki.ClusterCA))
	ex.DryRun = true
	if err := runPhases(t, RotateCA(DefaultTokenWait), c, ex, out); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, stage := range []string{"trust: change the files of", "switch: change the files of", "retire: change the files of"} {
		if !strings.Contains(out.String(), stage) {
			t.Errorf("the plan lacks %q:\n%s", stage, out)
		}
	}
	if !strings.Contains(out.String(), "etcd/ca, the service-account key") {
		t.Errorf("the plan does not name the service-account key:\n%s", out)
	}
	if after, _ := os.ReadFile(store.CertPath(pki.ClusterCA)); string(after) != string(before) {
		t.Error("a dry run changed the cluster CA")
	}
	if rec, _ := pki.LoadCARotation(store); rec != nil {
		t.Error("a dry run recorded a rotation")
	}
}

// A kubelet's own client certificate that the old CA signed is removed, and the kubelet restarted in its turn;
// one the signing CA signed stays.
func TestKubeletClientCertOfTheOldCAIsReplaced(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	store := PKIStore(c)
	oldSigned := certOfKubeconfig(t, store.KubeconfigPath("kubelet-worker1"))
	tree, err := pki.TreeFor(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.TrustNewCAs(store, tree, pki.RotatableCAs, time.Now(), pki.GenerateKey); err != nil {
		t.Fatal(err)
	}
	if err := pki.SwitchToNewCAs(store, pki.RotatableCAs); err != nil {
		t.Fatal(err)
	}
	w := hosts["worker1"]
	w.OnCommand("if [ -e "+kubeletClientCert, ssh.Result{Stdout: oldSigned}, nil)
	r := &workflow.Run{Cluster: c, Reporter: ex.Reporter}
	tgt := &workflow.Target{Spec: c.Spec.Hosts[1], Host: w}
	if err := (&caRotation{}).kubeletClient(context.Background(), r, tgt); err != nil {
		t.Fatal(err)
	}
	cmds := w.Commands()
	rm := slices.Index(cmds, "rm -f /var/lib/kubelet/pki/kubelet-client-*.pem")
	rolled := slices.IndexFunc(cmds, func(c string) bool {
		return strings.HasPrefix(c, "systemctl show -p NRestarts -p ActiveState -p SubState kubelet")
	})
	if rm < 0 || rolled < rm {
		t.Errorf("a client certificate of the old CA stays, or the kubelet is not rolled after its removal: %q", cmds)
	}

	// reissued from the new CA, it stays
	if err := runPhases(t, Init(), c, ex, out, "certs/generate"); err != nil {
		t.Fatal(err)
	}
	w2 := hosts["worker2"]
	w2.OnCommand("if [ -e "+kubeletClientCert, ssh.Result{Stdout: certOfKubeconfig(t, store.KubeconfigPath("kubelet-worker2"))}, nil)
	r2 := &workflow.Run{Cluster: c, Reporter: ex.Reporter}
	if err := (&caRotation{}).kubeletClient(context.Background(), r2, &workflow.Target{Spec: c.Spec.Hosts[2], Host: w2}); err != nil {
		t.Fatal(err)
	}
	if len(commandsLike(w2, "rm -f")) != 0 || len(commandsLike(w2, "systemctl")) != 0 {
		t.Errorf("a client certificate of the new CA was removed: %q", w2.Commands())
	}
}

// certOfKubeconfig is the client certificate of a kubeconfig, as the PEM a kubelet keeps (its key left out).
func certOfKubeconfig(t *testing.T, path string) []byte {
	t.Helper()
	pair, _, err := pki.Credentials(path)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]})
}

// A pod whose projected token names a key other than the signing one is stale, and so is one whose header cannot
// be read; pods holding tokens of the signing key alone are not.
func TestStaleTokensNamesPodsOfTheOldKey(t *testing.T) {
	header := func(kid string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"` + kid + `"}`))
	}
	pods := map[string]string{"u1": "kube-system/coredns-a", "u2": "default/web-b", "u3": "default/web-c", "u4": "default/odd"}
	out := "u1 " + header("new") + "\n" +
		"u2 " + header("old") + "\n" +
		"u2 " + header("new") + "\n" + // a second volume of the same pod, refreshed already
		"u3 " + header("new") + "\n" +
		"u4 not-base64!\n" +
		"u9 " + header("old") + "\n" // a pod the API no longer lists as running
	got := staleTokens(out, "new", pods)
	if want := []string{"default/web-b", "default/odd"}; !slices.Equal(got, want) {
		t.Errorf("stale pods %v, want %v", got, want)
	}
	if got := staleTokens("", "new", pods); len(got) != 0 {
		t.Errorf("no tokens: stale %v", got)
	}
}
