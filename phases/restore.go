package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/privcloud/privcloud/backup"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// caFiles are the state directory's files that make a cluster's identity: a backup whose ones differ is of
// another cluster, or of this one before its CAs were replaced.
var caFiles = []string{"pki/ca.crt", "pki/front-proxy-ca.crt", "pki/etcd/ca.crt", "pki/sa.pub"}

// restoreState carries the unpacked backup from the check to the hosts.
type restoreState struct {
	file, dir string
	now       time.Time
}

// Restore is the workflow behind 'privcloud restore FILE': the backup is checked and its PKI put back where the
// state directory lacks it, the control plane and every etcd member stop, every member's data directory is
// made anew from the one snapshot (the old one kept aside), and the members start together as a new cluster
// of the same members: quorum-safe for 1 or 3 members. The returned function removes the unpacked backup.
func Restore(file string) (workflow.Workflow, func()) {
	st := &restoreState{file: file, now: time.Now()}
	return workflow.Workflow{Name: "restore", Command: "restore " + ssh.ShellQuote(file), NoRecords: true, Phases: []workflow.Phase{
		// required: every later phase reads the unpacked backup, so a resumed run (--from) checks it again
		{Name: "check", Short: "Check the backup (every sha256, this cluster's CAs); put back the PKI files the state directory lacks", Required: true, Run: st.check},
		connect(),
		certs(&InstallOptions{ReplacePKI: true}), // the backup's PKI is the identity being restored
		{Name: "stop", Short: "Stop the API servers, controller-managers and schedulers, then every etcd member", Run: stopForRestore},
		{Name: "etcd-data", Short: "Restore the snapshot into every member's data directory, the old one kept aside", Roles: etcdMembers, RunHost: st.restoreMember},
		etcd(),
		controlPlanePhases(),
		waitNodesReady(),
	}}, func() { os.RemoveAll(st.dir) }
}

func (st *restoreState) check(_ context.Context, r *workflow.Run) error {
	if _, err := os.Stat(st.file); err != nil {
		return err
	}
	state := r.Cluster.Spec.StateDir
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(state, ".restore-")
	if err != nil {
		return err
	}
	st.dir = dir
	m, err := backup.Extract(st.file, dir)
	if err != nil {
		return err
	}
	if m.Cluster != r.Cluster.Metadata.Name {
		return fmt.Errorf("%s is a backup of cluster %q, and cluster.yaml describes %q", st.file, m.Cluster, r.Cluster.Metadata.Name)
	}
	for _, f := range caFiles {
		theirs, err := os.ReadFile(filepath.Join(dir, backup.StatePrefix, f))
		if err != nil {
			return fmt.Errorf("%s has no %s: %w", st.file, f, err)
		}
		ours, err := os.ReadFile(filepath.Join(state, f))
		if err == nil && !bytes.Equal(ours, theirs) {
			return fmt.Errorf("%s in the state directory %s differs from the backup's: the backup is of another cluster (or of this one before its CAs changed); "+
				"move %s away to restore with the backup's PKI", f, state, filepath.Join(state, "pki"))
		}
	}
	if err := keepBackupKeys(r, pki.Store{Dir: filepath.Join(dir, backup.StatePrefix)}, PKIStore(r.Cluster)); err != nil {
		return err
	}
	restored := 0
	err = filepath.WalkDir(filepath.Join(dir, backup.StatePrefix), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, backup.StatePrefix), p)
		dst := filepath.Join(state, rel)
		if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
			return err // the state directory's own file wins: it may have been renewed since
		}
		if r.DryRun {
			r.Plan(ssh.Action{Kind: "write", Path: dst})
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		restored++
		return os.Rename(p, dst)
	})
	if err != nil {
		return err
	}
	if restored > 0 {
		r.Changed("", fmt.Sprintf("put back %d PKI, kubeconfig and credential files from the backup", restored))
	}
	r.Warn("", fmt.Sprintf("restoring the etcd snapshot taken %s through %s: the cluster's state returns to that moment",
		m.Created.Format(time.RFC3339), m.EtcdMember))
	return nil
}

// keepBackupKeys adds to the state directory's encryption configuration the keys of the backup's that it no
// longer holds, as keys that decrypt only: the snapshot's Secrets were written under them (a key rotation since
// the backup dropped them), and without them no API server could read one. The state directory's own key goes
// on encrypting.
func keepBackupKeys(r *workflow.Run, theirs, ours pki.Store) error {
	backupKeys, err := pki.EncryptionKeys(theirs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a backup of a cluster without encryption
	}
	if err != nil {
		return err
	}
	current, err := pki.EncryptionKeys(ours)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the backup's configuration is put back whole below
	}
	if err != nil {
		return err
	}
	var missing []string
	keys := current
	for _, k := range backupKeys {
		if !slices.ContainsFunc(current, func(c pki.EncryptionKey) bool { return c.Secret == k.Secret }) {
			keys, missing = append(keys, k), append(missing, k.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if r.DryRun {
		r.Plan(ssh.Action{Kind: "write", Path: ours.EncryptionConfigPath()})
		return nil
	}
	if err := pki.WriteEncryptionKeys(ours, keys); err != nil {
		return err
	}
	r.Changed("", "added the backup's encryption keys "+strings.Join(missing, ", ")+" for reading its Secrets")
	r.Warn("", "the backup's Secrets are encrypted with keys a rotation since dropped ("+strings.Join(missing, ", ")+
		"): they read them again; run 'privcloud secrets rotate-key' after the restore to write every Secret under one key")
	return nil
}

// stopForRestore stops every writer of etcd first, then every member: no member may run while the others
// are rebuilt from the snapshot.
func stopForRestore(ctx context.Context, r *workflow.Run) error {
	stop := func(targets []*workflow.Target, units string) error {
		return parallel.Each(targets, func(h *workflow.Target) error {
			if !r.Wet(h.Spec.Name, "systemctl stop "+units) {
				return nil
			}
			if _, err := h.Host.Run(ctx, "systemctl stop "+units); err != nil {
				return fmt.Errorf("%s: stop %s: %w", h.Spec.Name, units, err)
			}
			r.Changed(h.Spec.Name, "stopped "+units)
			return nil
		})
	}
	if err := stop(r.TargetsFor(controlPlane), strings.Join(controlPlaneUnits, " ")); err != nil {
		return err
	}
	return stop(r.TargetsFor(etcdMembers), "etcd")
}

// restoreMember makes the host's etcd data directory anew from the snapshot with etcdutl, for the members of
// cluster.yaml, and writes the bootstrap file to match.
func (st *restoreState) restoreMember(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	peers := foundingPeers(r)
	dataDir := strings.TrimRight(r.Cluster.Spec.Etcd.DataDir, "/")
	aside := dataDir + ".before-restore-" + st.now.UTC().Format(fileTime) // nothing is deleted
	if !r.Wet(t.Spec.Name, "etcdutl snapshot restore into "+dataDir+" (the old data kept in "+aside+")") {
		return nil
	}
	snapshot := "/var/lib/privcloud/restore-snapshot.db"
	if _, err := t.Host.Upload(ctx, ssh.LocalFile(filepath.Join(st.dir, backup.SnapshotPath)), snapshot, 0o600); err != nil {
		return err
	}
	script := fmt.Sprintf(`set -eu
command -v etcdutl >/dev/null || { echo "etcdutl is not installed: the bundle needs the etcdutl component (roles: [etcd])" >&2; exit 1; }
dir=%[1]s
rm -rf "$dir.restoring"
# the revision jumps past any a client saw before the disaster and is marked compacted: every watch of a
# kubelet, controller or API server cache then starts over from a fresh list, instead of waiting for a revision
# the restored store has not reached (etcd's advice for restoring under Kubernetes)
etcdutl snapshot restore %[2]s --name %[3]s --initial-cluster %[4]s --initial-cluster-token %[5]s --initial-advertise-peer-urls %[6]s --bump-revision 1000000000 --mark-compacted --data-dir "$dir.restoring" >/dev/null
if [ -e "$dir" ]; then mv "$dir" %[7]s; echo "kept the old etcd data in "%[7]s; fi
mv "$dir.restoring" "$dir"
chmod 700 "$dir"
rm -f %[2]s
echo "restored the etcd snapshot into $dir"`,
		ssh.ShellQuote(dataDir), snapshot, ssh.ShellQuote(t.Spec.Name), ssh.ShellQuote(strings.Join(peers, ",")),
		ssh.ShellQuote(r.Cluster.Metadata.Name), ssh.ShellQuote(peerURL(t.Spec)), ssh.ShellQuote(aside))
	if err := runScript(ctx, r, t, "restore the etcd snapshot", script); err != nil {
		return err
	}
	_, err := writeFiles(ctx, r, t, hostops.File{Path: etcdBootstrapFile, Content: []byte(bootstrapEnv(peers, "new", r.Cluster.Metadata.Name)), Mode: 0o644})
	return err
}
