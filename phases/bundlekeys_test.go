package phases

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// signingKeys makes one key pair per name under a temporary folder and returns the private key files; each
// public key is the private key's file + ".pub".
func signingKeys(t *testing.T, names ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n+".key")
		if err := bundle.GenerateSigningKey(p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func signBundle(t *testing.T, file, keyFile string) {
	t.Helper()
	priv, err := bundle.ReadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Sign(file, priv); err != nil {
		t.Fatal(err)
	}
}

// sentFiles lists what hosts received, but the run records the workflow keeps on them.
func sentFiles(hosts map[string]*sshtest.Fake) []string {
	var out []string
	for name, h := range hosts {
		for _, f := range h.Files() {
			if !strings.HasPrefix(f, workflow.RecordDir) {
				out = append(out, name+":"+f)
			}
		}
	}
	return out
}

func TestBundlePublicKeysRequireASignature(t *testing.T) {
	c, hosts, ex, _ := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"bundle"}}
	file := filepath.Join(t.TempDir(), "b.tar.zst")
	c.Spec.Bundle.Path = file
	smallBundle(t, file)
	keys := signingKeys(t, "listed", "other")
	listed, other := keys[0], keys[1]
	c.Spec.Bundle.PublicKeys = []string{listed + ".pub"}
	refused := func(step, want string) {
		t.Helper()
		err := Execute(context.Background(), Init(), c, ex)
		var ve *bundle.VerifyError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: want a *bundle.VerifyError (exit code 5), got %v", step, err)
		}
		for _, w := range []string{want, "the bundle " + file + " is not signed by a key of spec.bundle.publicKeys", "tried " + listed + ".pub", "'privcloud bundle sign --key KEY " + file + "'"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error lacks %q:\n%v", step, w, err)
			}
		}
	}

	refused("unsigned", "no signature: "+file+".sig does not exist")
	signBundle(t, file, other)
	refused("signed by another key", "the signature does not verify with the given public key")
	if sent := sentFiles(hosts); len(sent) > 0 {
		t.Fatalf("a refused bundle reached hosts: %v", sent)
	}

	signBundle(t, file, listed)
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatalf("a bundle signed by the listed key: %v", err)
	}
	if len(sentFiles(hosts)) == 0 {
		t.Fatal("the signed bundle reached no host")
	}

	// the bundle itself is unchanged, so the next runs take the "verified" short-cut: the signature is still checked
	if _, err := os.Stat(filepath.Join(c.Spec.StateDir, "bundle", "verified")); err != nil {
		t.Fatalf("no verified record: %v", err)
	}
	signBundle(t, file, other)
	refused("short-cut, signed by another key", "the signature does not verify with the given public key")
	os.Remove(file + ".sig")
	refused("short-cut, unsigned", "no signature")
}

func TestAnyOfSeveralBundleKeysWillDo(t *testing.T) {
	file := filepath.Join(t.TempDir(), "b.tar.zst")
	smallBundle(t, file)
	keys := signingKeys(t, "old", "new")
	signBundle(t, file, keys[1])
	pubs := []string{keys[0] + ".pub", keys[1] + ".pub"}
	if _, err := verifiedManifest(file, t.TempDir(), pubs...); err != nil {
		t.Errorf("signed by the second listed key: %v", err)
	}
	signBundle(t, file, signingKeys(t, "stranger")[0])
	_, err := verifiedManifest(file, t.TempDir(), pubs...)
	if err == nil || !strings.Contains(err.Error(), "tried "+pubs[0]+", "+pubs[1]) || !strings.Contains(err.Error(), "any of the 2 given public keys") {
		t.Errorf("signed by neither listed key: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "absent.pub")
	if _, err := verifiedManifest(file, t.TempDir(), missing); err == nil || !strings.Contains(err.Error(), "spec.bundle.publicKeys") || !strings.Contains(err.Error(), missing) {
		t.Errorf("an unreadable key file must stop the run, named: %v", err)
	}
}

// upgrade plan and apply read the bundle through planOn: the keys hold there too.
func TestUpgradePlanRequiresTheSignature(t *testing.T) {
	c, hosts, _, _ := fakeCluster(t)
	c.Spec.Bundle.Path = filepath.Join(t.TempDir(), "b.tar.zst")
	smallBundle(t, c.Spec.Bundle.Path)
	c.Spec.Bundle.PublicKeys = []string{signingKeys(t, "listed")[0] + ".pub"}
	connect := func(_ context.Context, h api.Host) (ssh.Host, error) { return hosts[h.Name], nil }
	_, err := UpgradePlan(context.Background(), c, connect, 25)
	if err == nil || !strings.Contains(err.Error(), c.Spec.Bundle.Path+" is not signed by a key of spec.bundle.publicKeys") {
		t.Errorf("upgrade plan with an unsigned bundle: %v", err)
	}
}
