package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stateConfig copies the example into a temporary folder, so its state directory is temporary too.
func stateConfig(t *testing.T) (config, state string) {
	t.Helper()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return config, filepath.Join(dir, ".privcloud")
}

func TestCertsGenerateAndCheck(t *testing.T) {
	config, state := stateConfig(t)

	r := run(t, "certs", "check-expiration", "-f", config)
	if r.code != ExitPhaseFailed || !strings.Contains(r.out, "missing") {
		t.Fatalf("before generating, every entry is missing: exit %d\n%s", r.code, r.out)
	}
	r = run(t, "certs", "generate", "-f", config, "--dry-run")
	if r.code != ExitOK || !strings.Contains(r.out, "would write 30 of 30 entries") {
		t.Fatalf("dry run: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("dry run created %s", state)
	}
	r = run(t, "certs", "generate", "-f", config)
	if r.code != ExitOK || !strings.Contains(r.out, "wrote 30 of 30 entries") {
		t.Fatalf("generate: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state directory: %v", err)
	}
	r = run(t, "certs", "generate", "-f", config, "-o", "json")
	var res struct {
		Entries []struct{ Name, Action string }
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil || len(res.Entries) != 30 {
		t.Fatalf("generate -o json: %v\n%s", err, r.out)
	}
	for _, e := range res.Entries {
		if e.Action != "reused" {
			t.Errorf("second run: %s %s", e.Name, e.Action)
		}
	}
	r = run(t, "certs", "check-expiration", "-f", config)
	renews := time.Now().Add(365*24*time.Hour - 90*24*time.Hour).Format(time.DateOnly)
	if r.code != ExitOK || !strings.Contains(r.out, "apiserver/cp1 ") || !strings.Contains(r.out, "3649d") || !strings.Contains(r.out, renews) {
		t.Errorf("check-expiration: exit %d\n%s", r.code, r.out)
	}
}

func TestKubeconfigCommand(t *testing.T) {
	config, _ := stateConfig(t)
	if r := run(t, "kubeconfig", "-f", config); r.code == ExitOK || !strings.Contains(r.errOut, "certs generate") {
		t.Errorf("before the PKI exists: exit %d %s", r.code, r.errOut)
	}
	run(t, "certs", "generate", "-f", config)
	r := run(t, "kubeconfig", "-f", config)
	if r.code != ExitOK || !strings.Contains(r.out, "server: https://10.77.0.11:6443") || !strings.Contains(r.out, "client-key-data") {
		t.Errorf("kubeconfig: exit %d\n%s", r.code, r.out)
	}
	out := filepath.Join(t.TempDir(), "admin.conf")
	if r := run(t, "kubeconfig", "-f", config, "--out", out); r.code != ExitOK {
		t.Fatal(r.errOut)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--out file: %v %v", fi.Mode(), err)
	}
}

func TestCertsRenewRefusesBadNames(t *testing.T) {
	config, _ := stateConfig(t)
	for _, tc := range []struct{ arg, msg string }{
		{"apiservr", `no certificate named "apiservr"`},
		{"ca", "cannot be renewed in place"},
		{"sa", "cannot be renewed in place"},
	} {
		r := run(t, "certs", "renew", tc.arg, "-f", config)
		if r.code != ExitUsage || !strings.Contains(r.errOut, tc.msg) {
			t.Errorf("renew %s: exit %d %s", tc.arg, r.code, r.errOut)
		}
	}
}
