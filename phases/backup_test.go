package phases

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privcloud/privcloud/backup"
	"github.com/privcloud/privcloud/ssh"
)

// A backup takes the snapshot on an etcd member, brings it here with the state directory and cluster.yaml in
// one checked file, and removes the member's copy; a member that cannot give one is reported with its error and
// nothing is written.
func TestBackupSavesSnapshotStateAndConfig(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	cp := hosts["cp1"]
	cp.OnCommandFunc("mkdir -p /var/lib/privcloud && ", func(cmd string) (ssh.Result, error) {
		if !strings.Contains(cmd, "etcdctl") || !strings.Contains(cmd, " snapshot save /var/lib/privcloud/etcd-snapshot-") {
			t.Errorf("snapshot command: %s", cmd)
		}
		fields := strings.Fields(cmd)
		cp.SetFile(fields[len(fields)-1], []byte("etcd snapshot bytes"), 0o600)
		return ssh.Result{}, nil
	})
	config := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(config, []byte("apiVersion: privcloud.io/v1alpha1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backups", "b.tar.zst")
	if err := runPhases(t, Backup(config, file), c, ex, out); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := t.TempDir()
	m, err := backup.Extract(file, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.EtcdMember != "cp1" || m.Cluster != c.Metadata.Name {
		t.Errorf("manifest: %+v", m)
	}
	for path, want := range map[string]string{backup.SnapshotPath: "etcd snapshot bytes", backup.ConfigPath: "apiVersion: privcloud.io/v1alpha1\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, path)); err != nil || string(got) != want {
			t.Errorf("%s in the backup: %q %v", path, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, backup.StatePrefix, "pki", "ca.key")); err != nil {
		t.Errorf("the state directory's CA key is not in the backup: %v", err)
	}
	if removed := commandsLike(cp, "rm -f /var/lib/privcloud/etcd-snapshot-"); len(removed) != 1 {
		t.Errorf("the member's copy is not removed: %q", cp.Commands())
	}

	// no member gives a snapshot: the error names it, and no file is written
	cp.OnCommand("mkdir -p /var/lib/privcloud && ", ssh.Result{}, errors.New("etcdserver: no leader"))
	failed := filepath.Join(t.TempDir(), "failed.tar.zst")
	err = runPhases(t, Backup(config, failed), c, ex, out)
	if err == nil || !strings.Contains(err.Error(), "no etcd member gave a snapshot") || !strings.Contains(err.Error(), "cp1: etcdctl snapshot save: etcdserver: no leader") {
		t.Errorf("backup without a snapshot: %v", err)
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("a failed backup left %s: %v", failed, err)
	}
}
