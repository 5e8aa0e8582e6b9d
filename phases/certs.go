package phases

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

// PKIStore is the local PKI of a cluster: its state directory.
func PKIStore(c *api.Cluster) pki.Store { return pki.Store{Dir: c.Spec.StateDir} }

// certsState is what the certs phases of a run are asked to do. The units that read a file distribution
// changed are owed a restart in the run's rollout.
type certsState struct {
	renew []string
	// replaceIdentity is the operator's explicit word that hosts may be sent another CA than the one they trust
	replaceIdentity func() bool
}

func certs(o *InstallOptions) workflow.Phase {
	return (&certsState{replaceIdentity: func() bool { return o != nil && o.ReplacePKI }}).phase()
}

func (s *certsState) phase() workflow.Phase {
	return workflow.Phase{Name: "certs", Short: "Generate the cluster PKI locally and send each host its part", Phases: []workflow.Phase{
		{Name: "identity", Short: "Check that every host trusts the CAs of the state directory, before anything is generated or sent", RunHost: s.identity},
		{Name: "generate", Short: "Create or reuse every CA, certificate and kubeconfig in the local state directory", Run: s.generate},
		{Name: "distribute", Short: "Send each host only the certificates and keys its roles need", RunHost: s.distribute},
	}}
}

// IdentityError is a host that trusts another cluster identity (CA or service-account key) than the state
// directory holds, or a state directory that holds none while the host has one.
type IdentityError struct {
	Host, Target, StateDir string
	HostKeys, LocalKeys    []string // public-key fingerprints; LocalKeys empty when the state directory lacks the file
}

func (e *IdentityError) Error() string {
	what := fmt.Sprintf("the state directory %s has no %s", e.StateDir, path.Base(e.Target))
	if len(e.LocalKeys) > 0 {
		what = fmt.Sprintf("the state directory %s holds %s", e.StateDir, strings.Join(e.LocalKeys, ", "))
	}
	return fmt.Sprintf("%s already trusts %s in %s, but %s: sending it would replace the running cluster's identity. "+
		"Nothing was generated or sent. Point spec.stateDir at the cluster's state directory, or get it back from a backup "+
		"('privcloud backup' files hold the PKI: tar -xf BACKUP pki/); to give hosts that were rebuilt a new PKI on purpose, "+
		"re-run with --replace-pki", e.Host, strings.Join(e.HostKeys, ", "), e.Target, what)
}

// identity compares the CAs and service-account key a host already trusts with the state directory's, before
// generate would make new ones for a lost state directory and distribute would send them.
func (s *certsState) identity(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if s.replaceIdentity != nil && s.replaceIdentity() {
		return workflow.Skip("--replace-pki: the host is sent the state directory's PKI whatever it trusts")
	}
	tree, err := pki.TreeFor(r.Cluster)
	if err != nil {
		return err
	}
	for _, d := range pki.Deployments(PKIStore(r.Cluster), tree, t.Spec) {
		if !d.IsIdentity() {
			continue
		}
		have, err := t.Host.ReadFile(ctx, d.Target)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a new host
		}
		if err != nil {
			return err
		}
		local, err := os.ReadFile(d.Source)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err == nil && pki.SameIdentity(have, local) {
			continue
		}
		return &IdentityError{Host: t.Spec.Name, Target: d.Target, StateDir: r.Cluster.Spec.StateDir,
			HostKeys: pki.Fingerprints(have), LocalKeys: pki.Fingerprints(local)}
	}
	return nil
}

// generate runs load-or-create on the local store; in a dry run it only reports what it would create.
func (s *certsState) generate(_ context.Context, r *workflow.Run) error {
	res, err := EnsurePKI(r.Cluster, pki.Options{Renew: s.renew, DryRun: r.DryRun})
	if err != nil {
		return err
	}
	if r.Cluster.Spec.APIServer.SecretsEncrypted() {
		action, err := pki.EnsureEncryptionConfig(PKIStore(r.Cluster), r.DryRun, time.Now())
		if err != nil {
			return err
		}
		res.Outcomes = append(res.Outcomes, pki.Outcome{Name: pki.EncryptionConfig, Action: action})
	}
	for _, o := range res.Outcomes {
		msg := o.Name + " " + string(o.Action)
		if o.Reason != "" {
			msg += ": " + o.Reason
		}
		switch {
		case o.Action != pki.Created && o.Action != pki.Reissued:
		case r.DryRun:
			r.Reporter.Emit(report.Event{Workflow: r.Workflow, Phase: "certs/generate", Status: report.Planned, Message: "would be " + msg})
		default:
			r.Changed("", msg)
		}
	}
	return nil
}

// EnsurePKI makes the cluster's local PKI complete and current: leaves within spec.pki.renewBefore of their end
// are renewed, unless the CA is external (privcloud cannot sign: expiry is reported, not acted on).
func EnsurePKI(c *api.Cluster, o pki.Options) (*pki.Result, error) {
	tree, err := pki.TreeFor(c)
	if err != nil {
		return nil, err
	}
	if !c.Spec.PKI.ExternalCA {
		o.RenewBefore = c.Spec.PKI.RenewBefore.Duration
	}
	return pki.Ensure(PKIStore(c), tree, o)
}

// distribute uploads the host's share of the PKI; unchanged files are not sent again.
func (s *certsState) distribute(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	tree, err := pki.TreeFor(r.Cluster)
	if err != nil {
		return err
	}
	var puts []ssh.Put
	unitsOf := map[string][]string{}
	for _, d := range pki.Deployments(PKIStore(r.Cluster), tree, t.Spec) {
		if _, err := os.Stat(d.Source); r.DryRun && errors.Is(err, fs.ErrNotExist) {
			// not generated yet, because the dry run generated nothing: it would be sent
			r.Reporter.Emit(report.Event{Workflow: r.Workflow, Phase: "certs/distribute", Host: t.Spec.Name, Status: report.Planned,
				Message: fmt.Sprintf("would write: %s (%04o, from %s once generated)", d.Target, d.Mode, d.Entry)})
			continue
		}
		puts = append(puts, ssh.Put{Content: ssh.LocalFile(d.Source), Dst: d.Target, Mode: d.Mode, Owner: "root:root"})
		unitsOf[d.Target] = d.Units
	}
	changed, err := ssh.UploadAll(ctx, t.Host, puts)
	var units []string
	for _, dst := range changed {
		r.Changed(t.Spec.Name, dst)
		units = append(units, unitsOf[dst]...)
	}
	if err != nil {
		return err
	}
	// the services that read them restart later in the run, each in its turn behind its gate
	rolloutOf(r).owe(t.Spec.Name, units...)
	return nil
}

// RenewCerts reissues the named entries ("all" for every leaf and kubeconfig), sends the new files to the
// hosts that use them and restarts what reads them.
func RenewCerts(names []string) workflow.Workflow {
	s := &certsState{renew: names} // renewing leaves keeps the CAs: the identity check guards it too
	p := s.phase()
	return workflow.Workflow{Name: "certs renew", Command: "certs renew " + ssh.ShellQuoteAll(names), NoResume: true, Phases: []workflow.Phase{connect(), p, restartPhase()}}
}
