package phases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/privcloud/privcloud/backup"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
)

// Backup is the workflow behind 'privcloud backup': an etcd snapshot taken through a running member, saved
// with the state directory's PKI, kubeconfigs and credentials and cluster.yaml (read from configPath) in one
// file, out.
func Backup(configPath, out string) workflow.Workflow {
	return workflow.Workflow{Name: "backup", Command: "backup --out " + ssh.ShellQuote(out), NoRecords: true, NoResume: true, Phases: []workflow.Phase{
		connect(),
		{Name: "save", Short: "Take an etcd snapshot through a running member; save it with the PKI and cluster.yaml in one file",
			Run: func(ctx context.Context, r *workflow.Run) error { return saveBackup(ctx, r, configPath, out) }},
	}}
}

// DefaultBackupPath is where a backup goes without --out: the state directory's backups folder.
func DefaultBackupPath(stateDir, cluster string, now time.Time) string {
	return filepath.Join(stateDir, "backups", cluster+"-"+now.UTC().Format(fileTime)+".tar.zst")
}

// fileTime is how times appear in the names of files and folders privcloud makes.
const fileTime = "20060102T150405Z"

func saveBackup(ctx context.Context, r *workflow.Run, configPath, out string) error {
	members := r.TargetsFor(etcdMembers)
	if !r.Wet(members[0].Spec.Name, "etcdctl snapshot save, then write "+out) {
		return nil
	}
	var errs []error
	for _, t := range members {
		err := snapshotInto(ctx, r, t, configPath, out)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.Spec.Name, err))
	}
	return fmt.Errorf("no etcd member gave a snapshot: %w", errors.Join(errs...))
}

// snapshotInto takes the snapshot on t (etcdctl checks it as it saves), brings it here and writes the backup.
func snapshotInto(ctx context.Context, r *workflow.Run, t *workflow.Target, configPath, out string) error {
	remote := fmt.Sprintf("/var/lib/privcloud/etcd-snapshot-%d.db", time.Now().UnixNano())
	defer t.Host.Run(context.WithoutCancel(ctx), "rm -f "+remote+" "+remote+".part")
	// no --command-timeout: with one, etcdctl bounds the whole snapshot by it, and a large one takes minutes
	if _, err := t.Host.Run(ctx, "mkdir -p /var/lib/privcloud && "+hostops.EtcdctlBase+" snapshot save "+remote); err != nil {
		return fmt.Errorf("etcdctl snapshot save: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".snapshot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	snapshot := filepath.Join(dir, "snapshot.db")
	if err := download(ctx, t.Host, remote, snapshot); err != nil {
		return err
	}
	files, err := backup.StateFiles(r.Cluster.Spec.StateDir)
	if err != nil {
		return err
	}
	files[backup.SnapshotPath] = snapshot
	files[backup.ConfigPath] = configPath
	m := backup.Manifest{Cluster: r.Cluster.Metadata.Name, Created: time.Now().UTC(), KubernetesVersion: r.Cluster.Spec.KubernetesVersion,
		EtcdMember: t.Spec.Name}
	if err := backup.Write(out, m, files); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	r.Changed("", fmt.Sprintf("wrote %s (%d files, %.1f MiB; etcd snapshot through %s)", out, len(files), float64(fi.Size())/(1<<20), t.Spec.Name))
	return nil
}

// download brings a remote file here, streamed when the host can, atomically either way.
func download(ctx context.Context, h ssh.Host, remote, local string) error {
	if d, ok := h.(interface {
		Download(ctx context.Context, remote, local string) error
	}); ok {
		return d.Download(ctx, remote, local)
	}
	data, err := h.ReadFile(ctx, remote)
	if err != nil {
		return err
	}
	return atomicfile.Write(local, data, 0o600)
}
