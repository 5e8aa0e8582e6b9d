package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFixture(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	for p, content := range map[string]string{"pki/ca.key": "ca key", "pki/etcd/ca.crt": "etcd ca", "kubeconfig/admin.conf": "admin",
		"bundle/cache.bin": "not kept"} {
		os.MkdirAll(filepath.Dir(filepath.Join(state, p)), 0o700)
		os.WriteFile(filepath.Join(state, p), []byte(content), 0o600)
	}
	files, err := StateFiles(state)
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "snap.db")
	os.WriteFile(snap, []byte("etcd snapshot"), 0o600)
	files[SnapshotPath] = snap
	out := filepath.Join(dir, "backups", "lab.tar.zst")
	if err := Write(out, Manifest{Cluster: "lab", Created: time.Now(), EtcdMember: "h1"}, files); err != nil {
		t.Fatal(err)
	}
	return out, files
}

func TestRoundTrip(t *testing.T) {
	out, files := writeFixture(t)
	if _, ok := files["state/bundle/cache.bin"]; ok || len(files) != 4 {
		t.Errorf("state files kept: %v (caches must stay out)", files)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("a backup holds CA keys and must be 0600: %v", fi)
	}
	dir := t.TempDir()
	m, err := Extract(out, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cluster != "lab" || m.EtcdMember != "h1" || len(m.Files) != 4 {
		t.Errorf("manifest %+v", m)
	}
	for name, local := range files {
		want, _ := os.ReadFile(local)
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
}

func TestDamagedBackupIsRefused(t *testing.T) {
	out, _ := writeFixture(t)
	data, _ := os.ReadFile(out)
	// a file of another cluster's backup under this one's name, cut short
	os.WriteFile(out, data[:len(data)/2], 0o600)
	if _, err := Extract(out, t.TempDir()); err == nil {
		t.Error("a truncated backup was accepted")
	}
	os.WriteFile(out, []byte("not a backup"), 0o600)
	if _, err := Extract(out, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a privcloud backup") {
		t.Errorf("garbage: %v", err)
	}
	if _, err := Extract(filepath.Join(t.TempDir(), "missing.tar.zst"), t.TempDir()); err == nil {
		t.Error("a missing file was accepted")
	}
}
