package phases

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/privcloud/privcloud/addons"
	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// The cluster's CAs (cluster, front-proxy, etcd) are replaced in the stages pki describes, each a run of the
// same steps: change the state directory's CA files, reissue what they sign (pki.Ensure), send each host its
// changed files, and restart what reads them in its turn behind its health gate (control planes one at a time,
// nodes in batches). Between trust and switch, every pod must trust the new CA before any API server serves a
// certificate of it; before retire, every kubelet's self-renewed client certificate must come from the new CA.
// The stage reached is kept in the state directory: a run that stops is resumed by the same command.

// podTrustLimit is how long kubelets are given to refresh the kube-root-ca.crt copies in running pods after the
// ConfigMaps changed (their sync period is a minute).
var podTrustLimit = 3 * time.Minute

// kubeletClientCert is where a kubelet keeps the client certificate it renews itself (rotateCertificates).
const kubeletClientCert = "/var/lib/kubelet/pki/kubelet-client-current.pem"

type caRotation struct {
	rec       *pki.CARotation
	certs     *certsState
	tokenWait time.Duration
}

var caRotationStages = []string{pki.RotationTrust, pki.RotationSwitch, pki.RotationRetire}

// DefaultTokenWait is how long the retire stage waits, unless told otherwise, for kubelets to replace the
// projected service-account tokens of running pods signed by the old key: a kubelet replaces a token at 80% of
// its lifetime, and privcloud's API servers do not extend the hour the service-account admission asks for.
const DefaultTokenWait = 65 * time.Minute

// RotateCA is the workflow of 'privcloud certs rotate-ca'; tokenWait bounds the retire stage's wait for pods'
// tokens of the old service-account key to be replaced.
func RotateCA(tokenWait time.Duration) workflow.Workflow {
	c := &caRotation{certs: &certsState{}, tokenWait: tokenWait}
	// a stage changes the CA files (cas) and, when the record says the key rotates too, the service-account key's
	stage := func(name, short string, cas, key func(*workflow.Run) error, before, after []workflow.Phase) workflow.Phase {
		skip := c.skip(name)
		// what must hold before the stage comes before the state directory changes: a run stopped there
		// leaves files that another privcloud run (init) may send to the hosts
		var steps []workflow.Phase
		for _, p := range before {
			p.Skip = skip
			steps = append(steps, p)
		}
		steps = append(steps,
			workflow.Phase{Name: "ca", Short: "Change the state directory's CA and service-account key files for this stage", Skip: skip,
				Run: func(_ context.Context, r *workflow.Run) error { return c.change(r, name, cas, key) }},
			workflow.Phase{Name: "generate", Short: "Reissue what the CA files now sign differently", Skip: skip, Run: c.certs.generate},
			workflow.Phase{Name: "distribute", Short: "Send each host its changed files", Skip: skip, RunHost: c.certs.distribute},
			workflow.Phase{Name: "restart", Short: "Restart what reads them, in turns behind health gates", Skip: skip, RunHost: restartOwed},
			workflow.Phase{Name: "kubeconfig", Short: "Write the admin kubeconfig of this stage", Skip: skip,
				Run: func(ctx context.Context, r *workflow.Run) error { return writeAdminKubeconfig(ctx, r, "") }})
		for _, p := range after {
			p.Skip = skip
			steps = append(steps, p)
		}
		steps = append(steps, workflow.Phase{Name: "record", Short: "Record the stage as done", Skip: skip,
			Run: func(_ context.Context, r *workflow.Run) error { return c.record(r, name) }})
		return workflow.Phase{Name: name, Short: short, Phases: steps}
	}
	// before the old CA goes, while it is still trusted: a kubelet that renewed its client certificate through a
	// controller-manager still signing with the old key restarts on the kubeconfig privcloud sent in the switch
	kubeletClients := workflow.Phase{Name: "kubelet-client", Short: "Restart, in turns, kubelets whose own client certificate the new CA did not sign, on the one privcloud sent",
		Roles: nodes, RunHost: c.kubeletClient}
	// the controller-manager's controllers hold tokens in memory (--use-service-account-credentials), some
	// perhaps from an API server that had not switched yet when they were requested: it restarts once more
	controllerTokens := workflow.Phase{Name: "controller-tokens", Short: "Restart, in turns, the controller-managers, whose controllers may hold tokens of the old service-account key",
		Roles: controlPlane, RunHost: c.controllerTokens}
	podTokens := workflow.Phase{Name: "pod-tokens", Short: "Wait until no running pod holds a token of the old service-account key (the kubelet replaces them within the hour)",
		Roles: nodes, RunHost: c.podTokens}
	return workflow.Workflow{Name: "certs rotate-ca", Phases: []workflow.Phase{
		connect(),
		{Name: "start", Short: "Begin a rotation, or resume the one the state directory records", Required: true, Run: c.start},
		stage(pki.RotationTrust, "Every host and pod trusts a new CA beside each old one, every API server a new service-account key", func(r *workflow.Run) error {
			tree, err := pki.TreeFor(r.Cluster)
			if err != nil {
				return err
			}
			return pki.TrustNewCAs(PKIStore(r.Cluster), tree, c.rec.CAs, time.Now(), pki.GenerateKey)
		}, func(r *workflow.Run) error {
			tree, err := pki.TreeFor(r.Cluster)
			if err != nil {
				return err
			}
			return pki.TrustNewServiceAccountKey(PKIStore(r.Cluster), tree, pki.GenerateKey)
		}, nil, []workflow.Phase{
			{Name: "configmaps", Short: "Wait until every namespace's kube-root-ca.crt carries the new cluster CA", Run: c.configMapsTrust},
			{Name: "pods", Short: "Wait until every running pod's copy of it does", Roles: nodes, RunHost: c.podsTrust},
			monitoringCredentials(),
			{Name: "add-ons", Short: "Restart the add-ons that reach the API from pods (CoreDNS, monitoring): a client loads its CA when it starts", Run: c.restartAddons},
		}),
		stage(pki.RotationSwitch, "The new CAs and service-account key sign: every certificate and kubeconfig is reissued from them", func(r *workflow.Run) error {
			return pki.SwitchToNewCAs(PKIStore(r.Cluster), c.rec.CAs)
		}, func(r *workflow.Run) error {
			return pki.SwitchToNewServiceAccountKey(PKIStore(r.Cluster))
		}, nil, []workflow.Phase{
			monitoringCredentials(),
			{Name: "add-ons", Short: "Restart the add-ons that reach the API, so that their pods hold tokens of the new service-account key", Run: c.restartAddons},
		}),
		stage(pki.RotationRetire, "The old CAs and service-account key are trusted no more", func(r *workflow.Run) error {
			return pki.RetireOldCAs(PKIStore(r.Cluster), c.rec.CAs)
		}, func(r *workflow.Run) error {
			return pki.RetireOldServiceAccountKey(PKIStore(r.Cluster))
		}, []workflow.Phase{kubeletClients, controllerTokens, podTokens}, []workflow.Phase{monitoringCredentials()}),
		{Name: "finish", Short: "Remove the record of the rotation", Run: c.finish},
	}}
}

// start reads the rotation under way, or begins one.
func (c *caRotation) start(_ context.Context, r *workflow.Run) error {
	if r.Cluster.Spec.PKI.ExternalCA {
		return errors.New("spec.pki.externalCA is true: privcloud holds no CA key to rotate; put the new CA's certificate beside the old in the state directory's CA files yourself, then run privcloud certs renew all")
	}
	store := PKIStore(r.Cluster)
	rec, err := pki.LoadCARotation(store)
	if err != nil {
		return err
	}
	if rec != nil {
		c.rec = rec
		if rec.Stage != "" {
			r.Warn("", fmt.Sprintf("resuming the rotation of %s begun %s, after its %s stage", c.rotated(), rec.Started.Format(time.RFC3339), rec.Stage))
		}
		return nil
	}
	for _, ca := range pki.RotatableCAs {
		if _, err := os.Stat(store.KeyPath(ca)); err != nil {
			return fmt.Errorf("the %s CA's key: %w (run privcloud init first)", ca, err)
		}
	}
	c.rec = &pki.CARotation{CAs: slices.Clone(pki.RotatableCAs), ServiceAccountKey: true, Started: time.Now().UTC()}
	if r.DryRun {
		return nil
	}
	return pki.SaveCARotation(store, c.rec)
}

func (c *caRotation) skip(stage string) func(*workflow.Run) string {
	return func(*workflow.Run) string {
		if c.rec != nil && slices.Index(caRotationStages, stage) <= slices.Index(caRotationStages, c.rec.Stage) {
			return "done by an earlier run"
		}
		return ""
	}
}

func (c *caRotation) change(r *workflow.Run, stage string, cas, key func(*workflow.Run) error) error {
	if !r.Wet("", stage+": change the files of "+c.rotated()+" in the state directory") {
		return nil
	}
	if err := cas(r); err != nil {
		return err
	}
	if c.rec.ServiceAccountKey {
		if err := key(r); err != nil {
			return err
		}
	}
	r.Changed("", stage+": "+c.rotated())
	return nil
}

// rotated names what the rotation replaces.
func (c *caRotation) rotated() string {
	names := slices.Clone(c.rec.CAs)
	if c.rec.ServiceAccountKey {
		names = append(names, "the service-account key")
	}
	return strings.Join(names, ", ")
}

func (c *caRotation) record(r *workflow.Run, stage string) error {
	if r.DryRun {
		return nil
	}
	c.rec.Stage = stage
	if stage == pki.RotationSwitch {
		c.rec.Switched = time.Now().UTC()
	}
	return pki.SaveCARotation(PKIStore(r.Cluster), c.rec)
}

func (c *caRotation) finish(_ context.Context, r *workflow.Run) error {
	if !r.Wet("", "remove the record of the rotation") {
		return nil
	}
	if err := pki.SaveCARotation(PKIStore(r.Cluster), nil); err != nil {
		return err
	}
	r.Changed("", "the cluster trusts its new CAs alone")
	return nil
}

// configMapsTrust waits until the controller-manager has published the new cluster CA into every namespace's
// kube-root-ca.crt: a pod that reaches the API server must trust the new CA before any API server serves a
// certificate of it.
func (c *caRotation) configMapsTrust(ctx context.Context, r *workflow.Run) error {
	if !r.Wet("", "wait until every namespace's kube-root-ca.crt carries the new cluster CA") {
		return nil
	}
	newest, err := newestClusterCA(r)
	if err != nil {
		return err
	}
	return withControlPlaneAPI(r, func(k *kube.Client) error {
		var stale []string
		err := wait.Poll(ctx, 3*time.Minute, 2*time.Second, func() error {
			list, err := k.Kube.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=kube-root-ca.crt"})
			if err != nil {
				return err
			}
			stale = stale[:0]
			for _, cm := range list.Items {
				if !strings.Contains(cm.Data["ca.crt"], newest) {
					stale = append(stale, cm.Namespace)
				}
			}
			if len(stale) > 0 {
				return fmt.Errorf("not yet in %v", stale)
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("kube-root-ca.crt does not carry the new cluster CA after 3m (%v): is kube-controller-manager running?", err)
		}
		return err
	})
}

// podsTrust waits until the kubelet has refreshed the kube-root-ca.crt copy of every running pod on the node
// (the projected volumes under /var/lib/kubelet/pods).
func (c *caRotation) podsTrust(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if !r.Wet(t.Spec.Name, "wait until every running pod's kube-root-ca.crt carries the new cluster CA") {
		return nil
	}
	newest, err := newestClusterCA(r)
	if err != nil {
		return err
	}
	var stale string
	err = wait.Poll(ctx, podTrustLimit, 2*time.Second, func() error {
		// the running pods only: the kubelet refreshes no volume of a pod that has ended
		uids, err := runningPods(ctx, r, t.Spec.Name)
		if err != nil {
			return err
		}
		if len(uids) == 0 {
			return nil
		}
		// one line of the new certificate's base64 body is enough to tell it apart
		script := `for uid in ` + ssh.ShellQuoteAll(uids) + `; do
  for f in /var/lib/kubelet/pods/$uid/volumes/kubernetes.io~projected/*/ca.crt; do
    [ -e "$f" ] && ! grep -qF ` + ssh.ShellQuote(newest) + ` "$f" && echo "$f"
  done
done; true`
		res, err := t.Host.Run(ctx, script, ssh.ReadOnly())
		if err != nil {
			return err
		}
		if stale = strings.TrimSpace(string(res.Stdout)); stale != "" {
			return fmt.Errorf("pods' kube-root-ca.crt without the new CA: %s", strings.ReplaceAll(stale, "\n", ", "))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("after %s: %w", podTrustLimit, err)
	}
	return err
}

// addonsReachingTheAPI are privcloud's add-on workloads whose pods are clients of the API: each loads the CA
// when it starts, so they restart once their pods hold the new one, before any API server serves a
// certificate of it.
var addonsReachingTheAPI = []struct{ kind, namespace, name string }{
	{"Deployment", "kube-system", "coredns"},
	{"Deployment", addons.MonitoringNamespace, "prometheus-operator"},
	{"Deployment", addons.MonitoringNamespace, "kube-state-metrics"},
	// the operator owns Prometheus's StatefulSet: the annotation goes on its pods through the resource
	{"Prometheus", addons.MonitoringNamespace, "main"},
}

// monitoringCredentials gives Prometheus the cluster CA and the client certificate of the stage: the CA files
// of every target change with each stage, and its client certificate with the switch.
func monitoringCredentials() workflow.Phase {
	return workflow.Phase{Name: "monitoring", Short: "Give Prometheus the CA files and client certificate of this stage (when monitoring is on)",
		Run: func(ctx context.Context, r *workflow.Run) error {
			if !r.Cluster.Spec.Addons.Monitoring.Enabled {
				return workflow.Skip("spec.addons.monitoring.enabled is false")
			}
			secret, err := monitoringSecret(r)
			if err != nil || !r.Wet("", "apply "+kube.Name(secret)) {
				return err
			}
			return withControlPlaneAPI(r, func(k *kube.Client) error { return applyObjects(ctx, r, k, secret) })
		}}
}

// restartAddons restarts the add-ons that reach the API, as 'kubectl rollout restart' does, and waits until
// each has rolled out.
func (c *caRotation) restartAddons(ctx context.Context, r *workflow.Run) error {
	if !r.Wet("", "restart CoreDNS and the monitoring add-on's API clients, which load the CA when they start, and wait until they have rolled out") {
		return nil
	}
	restartedFor := fmt.Sprintf(`{"annotations":{"privcloud.io/restarted-for":"ca-rotation %s"}}`, time.Now().UTC().Format(time.RFC3339))
	patch := []byte(`{"spec":{"template":{"metadata":` + restartedFor + `}}}`)
	return withControlPlaneAPI(r, func(k *kube.Client) error {
		var restarted []*unstructured.Unstructured
		for _, a := range addonsReachingTheAPI {
			var err error
			switch a.kind {
			case "Deployment":
				_, err = k.Kube.AppsV1().Deployments(a.namespace).Patch(ctx, a.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			case "Prometheus":
				cr := &unstructured.Unstructured{}
				cr.SetAPIVersion("monitoring.coreos.com/v1")
				cr.SetKind("Prometheus")
				cr.SetNamespace(a.namespace)
				cr.SetName(a.name)
				err = k.MergePatch(ctx, cr, []byte(`{"spec":{"podMetadata":`+restartedFor+`}}`))
				if err == nil {
					// its pods are the StatefulSet's, which the operator rolls
					a.kind, a.name = "StatefulSet", "prometheus-"+a.name
				}
			}
			if meta.IsNoMatchError(err) {
				continue // the monitoring add-on was never applied: its kinds do not exist
			}
			if apierrors.IsNotFound(err) {
				continue // the add-on is off
			}
			if err != nil {
				return fmt.Errorf("restart %s %s/%s: %w", a.kind, a.namespace, a.name, err)
			}
			obj := &unstructured.Unstructured{}
			obj.SetAPIVersion("apps/v1")
			obj.SetKind(a.kind)
			obj.SetNamespace(a.namespace)
			obj.SetName(a.name)
			restarted = append(restarted, obj)
			r.Changed("", "restarted "+a.kind+" "+a.namespace+"/"+a.name)
		}
		return k.WaitReady(ctx, restarted, 5*time.Minute)
	})
}

// runningPods are the UIDs of the pods running on a node, sorted.
func runningPods(ctx context.Context, r *workflow.Run, node string) ([]string, error) {
	pods, err := runningPodsByUID(ctx, r, node)
	return slices.Sorted(maps.Keys(pods)), err
}

// newestClusterCA is a line of the base64 body of the newest certificate in the cluster CA file (the new CA in
// the trust stage): present in any file that holds that certificate, and in no other.
func newestClusterCA(r *workflow.Run) (string, error) {
	bundle, err := os.ReadFile(PKIStore(r.Cluster).CertPath(pki.ClusterCA))
	if err != nil {
		return "", err
	}
	// header, body lines, footer, "": the next-to-last body line falls in the signature, which no other
	// certificate shares
	lines := strings.Split(string(lastPEMBlock(bundle)), "\n")
	if len(lines) < 5 {
		return "", fmt.Errorf("%s holds no certificate", PKIStore(r.Cluster).CertPath(pki.ClusterCA))
	}
	return lines[len(lines)-4], nil
}

// lastPEMBlock is the last PEM block of a file, re-encoded: the newest certificate of a CA file in the trust
// stage.
func lastPEMBlock(data []byte) []byte {
	var last *pem.Block
	for {
		b, rest := pem.Decode(data)
		if b == nil {
			break
		}
		last, data = b, rest
	}
	if last == nil {
		return nil
	}
	return pem.EncodeToMemory(last)
}

// kubeletClient removes a kubelet's self-renewed client certificate when the cluster CA's signing certificate
// did not sign it and restarts the kubelet in its turn, behind its gate: it starts on the certificate of the
// kubelet.conf privcloud sent, and renews from there through a controller-manager that signs with the new key.
// Its key never leaves the host: only the certificate is read.
func (c *caRotation) kubeletClient(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if !r.Wet(t.Spec.Name, "replace the kubelet's own client certificate if the old CA signed it") {
		return nil
	}
	res, err := t.Host.Run(ctx, "if [ -e "+kubeletClientCert+" ]; then sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "+kubeletClientCert+"; fi")
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(res.Stdout)) == 0 {
		return workflow.Skip("the kubelet has no client certificate of its own yet")
	}
	signer, err := signingCert(PKIStore(r.Cluster), pki.ClusterCA)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(res.Stdout)
	if block != nil {
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil && cert.CheckSignatureFrom(signer) == nil {
			return nil
		}
	}
	if _, err := t.Host.Run(ctx, "rm -f /var/lib/kubelet/pki/kubelet-client-*.pem"); err != nil {
		return err
	}
	r.Changed(t.Spec.Name, "removed the kubelet's client certificate of the old CA")
	rolloutOf(r).owe(t.Spec.Name, "kubelet")
	return ensureRolled(ctx, r, t, "kubelet")
}

// signingCert is the certificate of a CA's key in the state directory.
func signingCert(s pki.Store, ca string) (*x509.Certificate, error) {
	certPEM, err := os.ReadFile(s.CertPath(ca))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(s.KeyPath(ca))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no key", s.CertPath(ca))
	}
	if err != nil {
		return nil, err
	}
	return pki.SigningCert(certPEM, keyPEM)
}

// controllerTokens restarts the host's controller-manager in its turn, behind its gate, when the service-account
// key rotates: it requests its controllers' tokens again, all signed by the new key.
func (c *caRotation) controllerTokens(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if !c.rec.ServiceAccountKey {
		return workflow.Skip("the service-account key does not rotate")
	}
	if !r.Wet(t.Spec.Name, "restart kube-controller-manager, whose controllers request their tokens again") {
		return nil
	}
	rolloutOf(r).owe(t.Spec.Name, "kube-controller-manager")
	return ensureRolled(ctx, r, t, "kube-controller-manager")
}

// podTokens waits until no running pod on the node holds a projected service-account token signed by a key
// other than the signing one: once sa.pub lists the new key alone, such a token is refused. Only each token's
// header (its key ID) is read from the host, never the token.
func (c *caRotation) podTokens(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if !c.rec.ServiceAccountKey {
		return workflow.Skip("the service-account key does not rotate")
	}
	if !r.Wet(t.Spec.Name, "wait until no running pod holds a token of the old service-account key") {
		return nil
	}
	signing, _, err := pki.ServiceAccountKeyIDs(PKIStore(r.Cluster))
	if err != nil {
		return err
	}
	var stale []string
	reported := time.Time{}
	err = wait.Poll(ctx, c.tokenWait, 5*time.Second, func() error {
		pods, err := runningPodsByUID(ctx, r, t.Spec.Name)
		if err != nil {
			return err
		}
		if len(pods) == 0 {
			return nil
		}
		uids := slices.Sorted(maps.Keys(pods))
		script := `for uid in ` + ssh.ShellQuoteAll(uids) + `; do
  for f in /var/lib/kubelet/pods/$uid/volumes/kubernetes.io~projected/*/token; do
    [ -e "$f" ] && printf '%s %s\n' "$uid" "$(cut -d. -f1 "$f")"
  done
done; true`
		res, err := t.Host.Run(ctx, script, ssh.ReadOnly())
		if err != nil {
			return err
		}
		stale = staleTokens(string(res.Stdout), signing, pods)
		if len(stale) == 0 {
			return nil
		}
		if time.Since(reported) > 5*time.Minute {
			reported = time.Now()
			r.Warn(t.Spec.Name, fmt.Sprintf("pods holding a token of the old service-account key, which the kubelet replaces within the hour (restart them to end the wait): %s", strings.Join(stale, ", ")))
		}
		return fmt.Errorf("pods with a token of the old service-account key: %s", strings.Join(stale, ", "))
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("after %s: %w; restart those pods, then run privcloud certs rotate-ca again", c.tokenWait, err)
	}
	return err
}

// staleTokens reads lines of "<pod uid> <token header>" and names the pods (namespace/name from pods) whose
// token's key ID is not signing. A header that cannot be read counts as stale: waiting is the safe side.
func staleTokens(out, signing string, pods map[string]string) []string {
	var stale []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		uid, header, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var h struct {
			KeyID string `json:"kid"`
		}
		raw, err := base64.RawURLEncoding.DecodeString(header)
		if err == nil && json.Unmarshal(raw, &h) == nil && h.KeyID == signing {
			continue
		}
		if name := pods[uid]; name != "" && !slices.Contains(stale, name) {
			stale = append(stale, name)
		}
	}
	return stale
}

// runningPodsByUID are the pods running on a node, by UID, as namespace/name.
func runningPodsByUID(ctx context.Context, r *workflow.Run, node string) (map[string]string, error) {
	pods := map[string]string{}
	err := withControlPlaneAPI(r, func(k *kube.Client) error {
		list, err := k.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node + ",status.phase=Running"})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			pods[string(p.UID)] = p.Namespace + "/" + p.Name
		}
		return nil
	})
	return pods, err
}
