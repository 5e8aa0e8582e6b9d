package phases

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/backup"
	"github.com/privcloud/privcloud/pki"
)

// A restore checks the backup before touching a host: another cluster's backup and one whose CAs differ from
// the state directory's are refused; PKI files the state directory lacks are put back. It then stops every
// writer of etcd before the members, and rebuilds each member's data directory from the snapshot with its own
// name and the cluster's founding peers, the old data kept aside, the bootstrap file saying "new".
func TestRestoreChecksTheBackupThenRebuildsMembers(t *testing.T) {
	c, hosts, ex, out := fakeCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	state := c.Spec.StateDir
	files, err := backup.StateFiles(state)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := filepath.Join(t.TempDir(), "snapshot.db")
	config := filepath.Join(t.TempDir(), "cluster.yaml")
	os.WriteFile(snapshot, []byte("etcd snapshot bytes"), 0o600)
	os.WriteFile(config, []byte("apiVersion: privcloud.io/v1alpha1\n"), 0o600)
	files[backup.SnapshotPath], files[backup.ConfigPath] = snapshot, config
	write := func(cluster string) string {
		f := filepath.Join(t.TempDir(), "b.tar.zst")
		if err := backup.Write(f, backup.Manifest{Cluster: cluster, Created: time.Now(), EtcdMember: "cp1"}, files); err != nil {
			t.Fatal(err)
		}
		return f
	}
	restore := func(file string, only ...string) error {
		wf, cleanup := Restore(file)
		defer cleanup()
		return runPhases(t, wf, c, ex, out, only...)
	}

	if err := restore(write("another"), "check"); err == nil || !strings.Contains(err.Error(), `is a backup of cluster "another"`) {
		t.Errorf("another cluster's backup: %v", err)
	}
	good := write(c.Metadata.Name)
	ca := filepath.Join(state, "pki", "ca.crt")
	ours, _ := os.ReadFile(ca)
	os.WriteFile(ca, []byte("another CA\n"), 0o644)
	if err := restore(good, "check"); err == nil || !strings.Contains(err.Error(), "pki/ca.crt in the state directory") {
		t.Errorf("a backup whose CA differs: %v", err)
	}
	os.WriteFile(ca, ours, 0o644)
	client := filepath.Join(state, "pki", "front-proxy-client.crt")
	want, _ := os.ReadFile(client)
	os.Remove(client)
	if err := restore(good, "check", "stop", "etcd-data"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got, err := os.ReadFile(client); err != nil || string(got) != string(want) {
		t.Errorf("the missing PKI file is not put back from the backup: %v", err)
	}
	if !strings.Contains(out.String(), "put back 1 PKI, kubeconfig and credential files from the backup") {
		t.Errorf("the put-back file is not reported:\n%s", out)
	}

	cp := hosts["cp1"]
	cmds := cp.Commands()
	writers := slices.Index(cmds, "systemctl stop kube-scheduler kube-controller-manager kube-apiserver")
	members := slices.Index(cmds, "systemctl stop etcd")
	if writers < 0 || members < writers {
		t.Errorf("the API server, controller-manager and scheduler do not stop before etcd: %q", cmds)
	}
	script := commandsLike(cp, "set -eu\ncommand -v etcdutl")
	if len(script) != 1 || !strings.Contains(script[0], "etcdutl snapshot restore /var/lib/privcloud/restore-snapshot.db --name 'cp1' --initial-cluster 'cp1=https://") ||
		!strings.Contains(script[0], `mv "$dir" '/var/lib/etcd.before-restore-`) ||
		// past every revision a watcher saw, and compacted: watches relist rather than wait for the store to catch up
		!strings.Contains(script[0], "--bump-revision 1000000000 --mark-compacted") {
		t.Errorf("the restore script on cp1: %q", script)
	}
	if data, _, ok := cp.File("/var/lib/privcloud/restore-snapshot.db"); !ok || string(data) != "etcd snapshot bytes" {
		t.Errorf("the snapshot sent to cp1: %q %v", data, ok)
	}
	if env, _, ok := cp.File(etcdBootstrapFile); !ok || !strings.Contains(string(env), "ETCD_INITIAL_CLUSTER_STATE=new") {
		t.Errorf("the bootstrap file on cp1: %q", env)
	}
	for _, w := range []string{"worker1", "worker2"} {
		if slices.ContainsFunc(hosts[w].Commands(), func(s string) bool { return strings.Contains(s, "etcd") }) {
			t.Errorf("%s is no etcd member but ran %q", w, hosts[w].Commands())
		}
	}
}

// A backup taken before a key rotation holds Secrets under a key the state directory dropped since: the restore
// adds it back as a key that decrypts, the state directory's own key still encrypting, and says what to do.
func TestRestoreKeepsTheBackupsEncryptionKeys(t *testing.T) {
	c, _, ex, out := fakeCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	store := PKIStore(c)
	old, err := pki.EncryptionKeys(store)
	if err != nil || len(old) != 1 {
		t.Fatalf("keys %v, %v", old, err)
	}
	files, err := backup.StateFiles(c.Spec.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := filepath.Join(t.TempDir(), "snapshot.db")
	os.WriteFile(snapshot, []byte("etcd snapshot bytes"), 0o600)
	files[backup.SnapshotPath] = snapshot
	// the backup is written from copies: the state directory's files change below
	copies := t.TempDir()
	for name, p := range files {
		b, _ := os.ReadFile(p)
		cp := filepath.Join(copies, strings.ReplaceAll(name, "/", "_"))
		os.WriteFile(cp, b, 0o600)
		files[name] = cp
	}
	f := filepath.Join(t.TempDir(), "b.tar.zst")
	if err := backup.Write(f, backup.Manifest{Cluster: c.Metadata.Name, Created: time.Now(), EtcdMember: "cp1"}, files); err != nil {
		t.Fatal(err)
	}
	rotated, _ := pki.NewEncryptionKey(time.Now().Add(time.Hour))
	if err := pki.WriteEncryptionKeys(store, []pki.EncryptionKey{rotated}); err != nil { // a finished rotation
		t.Fatal(err)
	}
	wf, cleanup := Restore(f)
	defer cleanup()
	if err := runPhases(t, wf, c, ex, out, "check"); err != nil {
		t.Fatal(err)
	}
	keys, err := pki.EncryptionKeys(store)
	if err != nil || len(keys) != 2 || keys[0] != rotated || keys[1] != old[0] {
		t.Errorf("keys after the restore %v (%v), want the rotated one first, then the backup's", keys, err)
	}
	if !strings.Contains(out.String(), "run 'privcloud secrets rotate-key' after the restore") {
		t.Errorf("no advice:\n%s", out)
	}
	out.Reset()
	wf, cleanup2 := Restore(f)
	defer cleanup2()
	if err := runPhases(t, wf, c, ex, out, "check"); err != nil {
		t.Fatal(err)
	}
	if again, _ := pki.EncryptionKeys(store); len(again) != 2 {
		t.Errorf("a second restore added keys again: %v", again)
	}
}
