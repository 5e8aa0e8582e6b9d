//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
)

// checkCARotation replaces the cluster, front-proxy and etcd CAs of the running cluster (three control planes,
// two workers) while a worker reads the API through its load balancer, with the state directory's admin
// credentials of the moment, and requests a Service across the pod network. The rotation is interrupted after
// its first stage and resumed. No request fails; afterwards every host trusts the new CAs alone, every node
// renews its lease (its kubelet authenticates with a certificate of the new CA), CoreDNS (a client of the API
// inside the cluster) resolves a Service made after the rotation, and the operator's kubeconfig works.
func checkCARotation(t *testing.T, l *lab.Lab, config string, controlPlanes []string) {
	t.Helper()
	c := loadConfig(t, config)
	store := phases.PKIStore(c)
	oldCA, err := os.ReadFile(store.CertPath(pki.ClusterCA))
	if err != nil {
		fatal(t, err)
	}
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	clusterIP := webBehindService(t, config, controlPlanes[0], "ca-web")
	worker, err := l.Connect(context.Background(), "h2")
	if err != nil {
		fatal(t, err)
	}
	defer worker.Close()
	adminPath := store.KubeconfigPath("admin")
	apiReads := startProbe("API from a worker, with the admin credentials of the moment", 200*time.Millisecond, func(ctx context.Context) error {
		cert, ca, err := pki.Credentials(adminPath)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		return get(ctx, through(worker, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
			"https://127.0.0.1:6444/api/v1/namespaces/default")
	})
	defer apiReads.end()
	svc := serviceProbe(worker, clusterIP, 200*time.Millisecond)
	defer svc.end()

	// what the old CAs and key made, to be refused afterwards: the operator's kubeconfig, a token
	oldKubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if data, err := os.ReadFile(filepath.Join(l.Dir, "kubeconfig")); err != nil || os.WriteFile(oldKubeconfig, data, 0o600) != nil {
		fatalf(t, "keep the old kubeconfig: %v", err)
	}
	oldToken := createToken(t, config, controlPlanes[0])

	lbBefore := apiLBProcesses(t, config)
	start := time.Now()
	r := runConfig(t, config, "certs", "rotate-ca", "--only", "start,trust")
	if r.code != 0 {
		fatalf(t, "the rotation's trust stage: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// after the switch, the pods of the user's own Deployment still hold tokens of the old key: the operator
	// restarts them rather than wait the hour the kubelet may take
	r = runConfig(t, config, "certs", "rotate-ca", "--only", "start,switch")
	if r.code != 0 || !strings.Contains(r.stdout, "resuming the rotation") {
		fatalf(t, "the rotation's switch stage, resumed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runConfig(t, config, "exec", "--hosts", controlPlanes[0], "--", restartWorkloads)
	if r.code != 0 {
		fatalf(t, "restart the workloads: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runConfig(t, config, "certs", "rotate-ca", "--token-wait", "3m")
	end := time.Now()
	apiReads.end()
	svc.end()
	apiTotal, apiFailed := apiReads.between(start, end)
	svcTotal, svcFailed := svc.between(start, end)
	t.Logf("BENCH CA rotation of 3 control planes and 5 nodes (interrupted after its first stage, then resumed): %s api-requests=%d api-failed=%d service-requests=%d service-failed=%d",
		end.Sub(start).Round(100*time.Millisecond), apiTotal, len(apiFailed), svcTotal, len(svcFailed))
	if r.code != 0 || !strings.Contains(r.stdout, "resuming the rotation") {
		fatalf(t, "the resumed rotation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if len(apiFailed) > 0 {
		errorf(t, "%d of %d API requests failed during the CA rotation:%s", len(apiFailed), apiTotal, describe(apiFailed, start))
	}
	if len(svcFailed) > 0 {
		errorf(t, "%d of %d Service requests failed during the CA rotation:%s", len(svcFailed), svcTotal, describe(svcFailed, start))
	}
	// each node's load balancer read the new CA and certificate on reloads: a restart would have cut every
	// connection of its node to the API
	if lbAfter := apiLBProcesses(t, config); !slices.Equal(lbBefore, lbAfter) {
		errorf(t, "an API load balancer restarted during the CA rotation: processes %v before, %v after", lbBefore, lbAfter)
	}

	// the state directory and every host hold the new CAs alone
	newCA, _ := os.ReadFile(store.CertPath(pki.ClusterCA))
	if pki.SameIdentity(oldCA, newCA) || strings.Count(string(newCA), "BEGIN CERTIFICATE") != 1 {
		errorf(t, "the state directory's cluster CA after the rotation:\n%s", newCA)
	}
	if rec, err := pki.LoadCARotation(store); rec != nil || err != nil {
		errorf(t, "the rotation's record stays: %+v %v", rec, err)
	}
	hosts := []string{"h1", "h2", "h3", "h4", "h5"}
	r = run(t, l, "exec", "--", "grep -c 'BEGIN CERTIFICATE' /etc/kubernetes/pki/ca.crt")
	if r.code != 0 || strings.Count(r.stdout, "\n  1\n") != len(hosts) {
		errorf(t, "a host trusts more than the new cluster CA:\n%s%s", r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", strings.Join(controlPlanes, ","), "--", "cat /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/etcd/ca.crt /etc/kubernetes/pki/front-proxy-ca.crt | grep -c 'BEGIN CERTIFICATE'")
	if r.code != 0 || strings.Count(r.stdout, "\n  3\n") != len(controlPlanes) {
		errorf(t, "a control plane trusts more than the three new CAs:\n%s%s", r.stdout, r.stderr)
	}

	// every kubelet renews its node's lease after the rotation: it authenticates with a certificate of the new CA
	cp, err := l.Connect(context.Background(), controlPlanes[0])
	if err != nil {
		fatal(t, err)
	}
	defer cp.Close()
	client, err := kube.New(store.KubeconfigPath("admin"), "127.0.0.1:6443", cp.Dial)
	if err != nil {
		fatal(t, err)
	}
	defer client.Close()
	var stale []string
	waitFor(t, "every node's lease renewed after the rotation", 90*time.Second, func() bool {
		leases, err := client.Kube.CoordinationV1().Leases("kube-node-lease").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		stale = stale[:0]
		for _, h := range hosts {
			renewed := false
			for _, le := range leases.Items {
				if le.Name == h && le.Spec.RenewTime != nil && le.Spec.RenewTime.After(end) {
					renewed = true
				}
			}
			if !renewed {
				stale = append(stale, h)
			}
		}
		return len(stale) == 0
	})
	if len(stale) > 0 {
		errorf(t, "nodes whose kubelet did not renew its lease after the rotation: %v", stale)
	}

	// CoreDNS watches the API with the new CA: a Service made now resolves from a pod
	r = runConfig(t, config, "exec", "--hosts", controlPlanes[0], "--", kubectl+"create service clusterip after-ca --tcp=8080:8080 && "+
		kubectl+"run ca-dns --image=registry.local/privcloud/test:1 --image-pull-policy=Never --restart=Never --command -- /bin/probe serve && "+
		kubectl+"wait --for=condition=Ready pod/ca-dns --timeout=120s && "+
		kubectl+"exec ca-dns -- /bin/probe dns after-ca.default.svc.cluster.local; "+
		kubectl+"delete pod ca-dns --wait=false; "+kubectl+"delete service after-ca ca-web; "+kubectl+"delete deployment ca-web")
	if r.code != 0 || !strings.Contains(r.stdout, "10.") {
		errorf(t, "a Service made after the rotation does not resolve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := listNodes(l.Dir+"/kubeconfig", ""); err != nil {
		errorf(t, "the operator's kubeconfig after the rotation: %v", err)
	}
	if err := listNodes(oldKubeconfig, ""); err == nil {
		errorf(t, "the kubeconfig of the old CA still works after the rotation")
	}

	// every certificate served chains to the new CAs: each kubelet, API server and etcd member
	etcdCA, _ := os.ReadFile(store.CertPath(pki.EtcdCA))
	for i, h := range hosts {
		ip := l.IP(i + 1)
		if err := servedChainsTo(ip+":10250", newCA); err != nil {
			errorf(t, "%s's kubelet: %v", h, err)
		}
		if slices.Contains(controlPlanes, h) {
			if err := servedChainsTo(ip+":6443", newCA); err != nil {
				errorf(t, "%s's API server: %v", h, err)
			}
			if err := servedChainsTo(ip+":2379", etcdCA); err != nil {
				errorf(t, "%s's etcd member: %v", h, err)
			}
		}
	}

	// the service-account key: a token of the old one is refused, one of the new works
	r = runConfig(t, config, "exec", "--hosts", controlPlanes[0], "--", "grep -c 'BEGIN PUBLIC KEY' /etc/kubernetes/pki/sa.pub")
	if r.code != 0 || !strings.Contains(r.stdout, "\n  1\n") {
		errorf(t, "sa.pub after the rotation does not list one key:\n%s%s", r.stdout, r.stderr)
	}
	if code := tokenStatus(t, cp, oldToken); code != 401 {
		errorf(t, "a token of the old service-account key: HTTP %d, want 401", code)
	}
	if code := tokenStatus(t, cp, createToken(t, config, controlPlanes[0])); code != 200 && code != 403 {
		errorf(t, "a token of the new service-account key: HTTP %d, want it authenticated", code)
	}
}

// restartWorkloads restarts what runs outside kube-system (privcloud restarts its own add-ons there), as an
// operator does after the switch rather than wait the hour the kubelet may take to replace their tokens:
// controllers' pods through a rollout, pods of no controller deleted.
const restartWorkloads = `set -e
k="kubectl --kubeconfig /etc/kubernetes/admin.conf"
for kind in deployment daemonset statefulset; do
  $k get $kind -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name | while read ns name; do
    [ "$ns" = kube-system ] && continue
    $k -n "$ns" rollout restart "$kind/$name"
    $k -n "$ns" rollout status "$kind/$name" --timeout=180s
  done
done
$k get pods -A --field-selector=status.phase=Running --no-headers \
  -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name,OWNER:.metadata.ownerReferences[0].kind | while read ns name owner; do
  [ "$ns" = kube-system ] && continue
  if [ "$owner" = "<none>" ]; then $k -n "$ns" delete pod "$name" --wait=false; fi
done`

// createToken asks for a service-account token of kube-system/default through host.
func createToken(t *testing.T, config, host string) string {
	t.Helper()
	r := runConfig(t, config, "exec", "--hosts", host, "--", "kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system create token default --duration=1h")
	var token string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.TrimSpace(line); strings.HasPrefix(f, "eyJ") && strings.Count(f, ".") == 2 {
			token = f
		}
	}
	if r.code != 0 || token == "" {
		fatalf(t, "create a token: exit %d (output not shown: it would hold a token)", r.code)
	}
	return token
}

// tokenStatus is the HTTP status of a request to the API server on host's loopback with token.
func tokenStatus(t *testing.T, host *ssh.Client, token string) int {
	t.Helper()
	c := through(host, &tls.Config{InsecureSkipVerify: true}) // the server is not what is tested here
	req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:6443/api/v1/namespaces/kube-system/serviceaccounts/default", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		fatalf(t, "a request with a token: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// servedChainsTo checks that the certificate served at addr chains to a certificate of caPEM.
func servedChainsTo(addr string, caPEM []byte) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // verified below, without a name
	if err != nil {
		return err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// apiLBProcesses are the API load balancers' processes, "host pid", sorted.
func apiLBProcesses(t *testing.T, config string) []string {
	t.Helper()
	r := runConfig(t, config, "exec", "--", "echo lb=$(hostname)/$(systemctl show -p MainPID --value "+pki.APILoadBalancerUnit+")")
	if r.code != 0 {
		fatalf(t, "the API load balancers' processes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if l, ok := strings.CutPrefix(strings.TrimSpace(line), "lb="); ok {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}
