package phases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// The key Secrets are encrypted with in etcd is replaced in stages that never leave an API server unable to
// read a Secret another one wrote:
//
//  1. add:     every API server learns the new key, listed second, so none writes with it yet;
//  2. primary: the new key comes first: every API server writes with it, and still reads the old;
//  3. rewrite: every Secret is written again, so etcd holds it under the new key;
//  4. retire:  the old key is removed.
//
// Each of stages 1, 2 and 4 changes the state directory's EncryptionConfiguration, sends it to the control
// planes and restarts their API servers one at a time behind /readyz. The stage reached is kept in the state
// directory: a run that stops is resumed by the same command.

// keyRotation is the record of a rotation under way.
type keyRotation struct {
	NewKey string   `json:"newKey"`
	OldKey []string `json:"oldKeys"`
	Done   []string `json:"stagesDone"`
}

func keyRotationPath(stateDir string) string {
	return filepath.Join(stateDir, "pki", "encryption-rotation.json")
}

func (k *keyRotation) done(stage string) bool {
	for _, s := range k.Done {
		if s == stage {
			return true
		}
	}
	return false
}

// encryptionRotation is one run of the rotation.
type encryptionRotation struct {
	rec *keyRotation
}

// RotateEncryptionKey is the workflow of 'privcloud secrets rotate-key'.
func RotateEncryptionKey() workflow.Workflow {
	e := &encryptionRotation{}
	stage := func(name, short string, keys func([]pki.EncryptionKey) []pki.EncryptionKey) workflow.Phase {
		// the engine asks each phase that runs whether to skip it: a stage done by an earlier run skips all three
		return workflow.Phase{Name: name, Short: short, Phases: []workflow.Phase{
			{Name: "config", Short: "Write the state directory's EncryptionConfiguration for this stage", Skip: e.skip(name),
				Run: func(_ context.Context, r *workflow.Run) error { return e.writeKeys(r, name, keys) }},
			{Name: "roll", Short: "Send it to each control plane and restart its API server, one at a time behind /readyz", Roles: controlPlane,
				Skip: e.skip(name), RunHost: e.send},
			{Name: "record", Short: "Record the stage as done", Skip: e.skip(name),
				Run: func(_ context.Context, r *workflow.Run) error { return e.record(r, name) }},
		}}
	}
	return workflow.Workflow{Name: "secrets rotate-key", Phases: []workflow.Phase{
		connect(),
		{Name: "start", Short: "Make the new key, or resume the rotation the state directory records", Required: true, Run: e.start},
		stage("add", "Every API server trusts the new key, listed second", func(ks []pki.EncryptionKey) []pki.EncryptionKey {
			return append(e.others(ks), e.newKey(ks))
		}),
		stage("primary", "Every API server encrypts with the new key and still reads the old ones", func(ks []pki.EncryptionKey) []pki.EncryptionKey {
			return append([]pki.EncryptionKey{e.newKey(ks)}, e.others(ks)...)
		}),
		{Name: "rewrite", Short: "Write every Secret again, so etcd holds it under the new key", Phases: []workflow.Phase{
			{Name: "secrets", Short: "Update each Secret unchanged: the API server stores it again with the new key", Skip: e.skip("rewrite"), Run: e.rewrite},
			{Name: "record", Short: "Record the stage as done", Skip: e.skip("rewrite"),
				Run: func(_ context.Context, r *workflow.Run) error { return e.record(r, "rewrite") }},
		}},
		stage("retire", "Remove the old keys", func(ks []pki.EncryptionKey) []pki.EncryptionKey {
			return []pki.EncryptionKey{e.newKey(ks)}
		}),
		{Name: "finish", Short: "Remove the record of the rotation", Run: e.finish},
	}}
}

// start reads the rotation under way, or begins one with a new key kept beside the old in the record only.
func (e *encryptionRotation) start(_ context.Context, r *workflow.Run) error {
	store := PKIStore(r.Cluster)
	if !r.Cluster.Spec.APIServer.SecretsEncrypted() {
		return errors.New("Secrets are not encrypted at rest (spec.apiServer.encryptSecrets is false): there is no key to rotate")
	}
	keys, err := pki.EncryptionKeys(store)
	if err != nil {
		return fmt.Errorf("the encryption key: %w (run privcloud init first)", err)
	}
	data, err := os.ReadFile(keyRotationPath(r.Cluster.Spec.StateDir))
	switch {
	case err == nil:
		var rec keyRotation
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("%s: %w", keyRotationPath(r.Cluster.Spec.StateDir), err)
		}
		e.rec = &rec
		r.Warn("", fmt.Sprintf("resuming the rotation to %s after the stages %v", rec.NewKey, rec.Done))
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	key, err := pki.NewEncryptionKey(time.Now())
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Name == key.Name { // two rotations within a second
			key.Name += "b"
		}
	}
	e.rec = &keyRotation{NewKey: key.Name}
	for _, k := range keys {
		e.rec.OldKey = append(e.rec.OldKey, k.Name)
	}
	if r.DryRun {
		return nil
	}
	// kept in the state directory's file from now on, listed last: no API server has it before the add stage
	if err := pki.WriteEncryptionKeys(store, append(keys, key)); err != nil {
		return err
	}
	r.Changed("", "new encryption key "+key.Name)
	return e.save(r)
}

func (e *encryptionRotation) skip(stage string) func(*workflow.Run) string {
	return func(*workflow.Run) string {
		if e.rec != nil && e.rec.done(stage) {
			return "done by an earlier run"
		}
		return ""
	}
}

// newKey and others split the file's keys into the rotation's new key and the rest.
func (e *encryptionRotation) newKey(ks []pki.EncryptionKey) pki.EncryptionKey {
	for _, k := range ks {
		if k.Name == e.rec.NewKey {
			return k
		}
	}
	return pki.EncryptionKey{}
}

func (e *encryptionRotation) others(ks []pki.EncryptionKey) []pki.EncryptionKey {
	var out []pki.EncryptionKey
	for _, k := range ks {
		if k.Name != e.rec.NewKey {
			out = append(out, k)
		}
	}
	return out
}

func (e *encryptionRotation) writeKeys(r *workflow.Run, stage string, order func([]pki.EncryptionKey) []pki.EncryptionKey) error {
	if r.DryRun { // the new key exists only once start has run for real
		r.Plan(sshAction("", stage+": write the EncryptionConfiguration for "+e.rec.NewKey+", send it to the control planes, restart their API servers one at a time"))
		return nil
	}
	store := PKIStore(r.Cluster)
	keys, err := pki.EncryptionKeys(store)
	if err != nil {
		return err
	}
	if e.newKey(keys).Name == "" {
		return fmt.Errorf("%s lacks the rotation's new key %s: restore it from a backup, or remove %s to start over",
			store.EncryptionConfigPath(), e.rec.NewKey, keyRotationPath(r.Cluster.Spec.StateDir))
	}
	return pki.WriteEncryptionKeys(store, order(keys))
}

// send writes the EncryptionConfiguration to a control plane and restarts its API server in its turn.
func (e *encryptionRotation) send(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	data, err := os.ReadFile(PKIStore(r.Cluster).EncryptionConfigPath())
	if err != nil {
		return err
	}
	remote := path.Join(pki.RemoteConfDir, pki.EncryptionConfig+".yaml")
	if _, err := writeFiles(ctx, r, t, hostops.File{Path: remote, Content: data, Mode: 0o600}); err != nil {
		return err
	}
	// an API server that started before the file was last written (now, or by a run that stopped before the
	// restart) has not read it
	if !r.DryRun {
		res, err := t.Host.Run(ctx, `ts=$(date -d "$(systemctl show -p ActiveEnterTimestamp --value kube-apiserver)" +%s 2>/dev/null || echo 0)
if [ "$(stat -c %Y `+ssh.ShellQuote(remote)+`)" -ge "$ts" ]; then echo stale; fi`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(res.Stdout)) == "stale" {
			rolloutOf(r).owe(t.Spec.Name, "kube-apiserver")
		}
	}
	if len(rolloutOf(r).owed(t.Spec.Name)) == 0 {
		return nil
	}
	return restartOwed(ctx, r, t)
}

// rewrite updates every Secret unchanged: the API server stores what it reads with an old key again under the
// first key.
func (e *encryptionRotation) rewrite(ctx context.Context, r *workflow.Run) error {
	if r.DryRun {
		r.Plan(sshAction("", "rewrite: update every Secret unchanged, so it is stored under "+e.rec.NewKey))
		return nil
	}
	return withControlPlaneAPI(r, func(c *kube.Client) error {
		n, cont := 0, ""
		for {
			list, err := c.Kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{Limit: 200, Continue: cont})
			if err != nil {
				return err
			}
			for i := range list.Items {
				s := &list.Items[i]
				// a Secret deleted or changed meanwhile needs no rewrite: its writer stored it under the new key
				if _, err := c.Kube.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					return fmt.Errorf("rewrite Secret %s/%s: %w", s.Namespace, s.Name, err)
				}
				n++
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
		r.Changed("", fmt.Sprintf("%d Secrets written again under %s", n, e.rec.NewKey))
		return nil
	})
}

func (e *encryptionRotation) record(r *workflow.Run, stage string) error {
	if r.DryRun || e.rec.done(stage) {
		return nil
	}
	e.rec.Done = append(e.rec.Done, stage)
	return e.save(r)
}

func (e *encryptionRotation) save(r *workflow.Run) error {
	data, err := json.MarshalIndent(e.rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(keyRotationPath(r.Cluster.Spec.StateDir), data, 0o600)
}

func (e *encryptionRotation) finish(_ context.Context, r *workflow.Run) error {
	if r.DryRun {
		return nil
	}
	if err := os.Remove(keyRotationPath(r.Cluster.Spec.StateDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	r.Changed("", "Secrets are encrypted with "+e.rec.NewKey+" only")
	return nil
}
