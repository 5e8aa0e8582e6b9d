//go:build e2e

// Package e2e runs privcloud against real hosts in the local lab. Each scenario gets fresh hosts; when one
// fails, the hosts' journals and consoles are printed. The suite fails if the machine's sysctls changed or
// anything of a lab is left behind.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	bundlebuild "github.com/privcloud/privcloud/bundle/build"
	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/pki"
)

var (
	privcloud string // the binary under test
	image     string
)

// machineSysctls are the settings the kubelet would write machine-wide; the lab shields them.
var machineSysctls = []string{"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"}

func sysctls() string {
	out, _ := exec.Command("sysctl", machineSysctls...).Output()
	return string(out)
}

const runtimeRoot = "/var/tmp/privcloud-e2e"

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("the e2e suite needs root (network namespaces, mounts, systemd-nspawn)")
		os.Exit(1)
	}
	before := sysctls()
	dir, err := os.MkdirTemp("", "privcloud-e2e-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	privcloud = filepath.Join(dir, "privcloud")
	if out, err := exec.Command("go", "build", "-o", privcloud, "../cmd/privcloud").CombinedOutput(); err != nil {
		fmt.Printf("build privcloud: %v\n%s", err, out)
		os.Exit(1)
	}
	home, _ := os.UserHomeDir()
	start := time.Now()
	if image, err = lab.EnsureImage(filepath.Join(home, ".cache/privcloud/lab"), os.Stderr); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("lab image ready in %s\n", time.Since(start).Round(time.Millisecond))
	stopRegistry, err := serveUpstreamRegistry()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	stopRegistry()
	if after := sysctls(); after != before {
		fmt.Printf("FAIL: the machine's sysctls changed:\nbefore:\n%safter:\n%s", before, after)
		code = 1
	}
	if left := lab.Leftovers(runtimeRoot); len(left) > 0 {
		fmt.Printf("FAIL: the labs left behind:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLab boots n fresh hosts for one test and takes them down after it, printing their logs if it failed.
// cluster.yaml gives the hosts numbered controlPlanes (default: 1) the control-plane and etcd roles.
func newLab(t *testing.T, n int, controlPlanes ...int) *lab.Lab {
	t.Helper()
	return newRoutedLab(t, n, nil, controlPlanes...)
}

// newRoutedLab is newLab with the hosts numbered routed on a second subnet, behind the lab's router.
func newRoutedLab(t *testing.T, n int, routed []int, controlPlanes ...int) *lab.Lab {
	t.Helper()
	runtime := filepath.Join(runtimeRoot, strings.ReplaceAll(t.Name(), "/", "_"))
	l, err := lab.Open(t.TempDir(), runtime, os.Stderr)
	if err != nil {
		fatal(t, err)
	}
	l.ControlPlanes, l.Routed = controlPlanes, routed
	start := time.Now()
	upErr := l.Up(context.Background(), image, n)
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t.Logf("hosts' logs:\n%s", l.Logs(ctx))
			cancel()
			t.Logf("what failed (as above):\n%s", failuresOf(t))
		}
		if err := l.Down(); err != nil {
			errorf(t, "lab down: %v", err)
		}
		if left := lab.Leftovers(runtime); len(left) > 0 {
			errorf(t, "lab down left behind: %v", left)
		}
	})
	if upErr != nil {
		fatalf(t, "lab up: %v", upErr)
	}
	t.Logf("%d hosts answer SSH after %s", n, time.Since(start).Round(10*time.Millisecond))
	return l
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, l *lab.Lab, args ...string) result {
	t.Helper()
	return runConfig(t, l.ClusterConfig(), args...)
}

// runConfig runs privcloud with the cluster.yaml at config.
func runConfig(t *testing.T, config string, args ...string) result {
	t.Helper()
	// -f goes before "--": after it, everything is the remote command
	flags := []string{"-f", config}
	if i := slices.Index(args, "--"); i >= 0 {
		args = slices.Concat(args[:i], flags, args[i:])
	} else {
		args = append(args, flags...)
	}
	return runPrivcloud(t, args...)
}

// runPrivcloud runs privcloud with args as they are (for commands that take no cluster.yaml).
func runPrivcloud(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(privcloud, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		fatal(t, err)
	}
	return result{code, out.String(), errOut.String()}
}

func TestPreflightAndExecOnLabHosts(t *testing.T) {
	l := newLab(t, 3)
	r := run(t, l, "preflight")
	if r.code != 0 || strings.Count(r.stdout, "debian 12") != 3 || !strings.Contains(r.stdout, "no /dev/kvm") {
		fatalf(t, "preflight: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--", "cat /etc/hostname /etc/machine-id; ip -4 -o addr show eth0")
	if r.code != 0 || !strings.Contains(r.stdout, "10.77.0.13/24") || !strings.Contains(r.stdout, "3 hosts: 3 ok") {
		fatalf(t, "exec: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// the hosts are air-gapped: nothing leaves the lab network
	r = run(t, l, "exec", "--hosts", "h1", "--", "timeout 3 bash -c 'echo > /dev/tcp/1.1.1.1/80' && echo REACHED || echo blocked")
	if !strings.Contains(r.stdout, "blocked") {
		errorf(t, "a lab host reached outside the lab:\n%s", r.stdout)
	}
}

func TestPKIOnLabHosts(t *testing.T) {
	l := newLab(t, 3)
	r := run(t, l, "init", "--only", "certs")
	if r.code != 0 || !strings.Contains(r.stdout, "0 failed") {
		fatalf(t, "init --only certs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "certs", "check-expiration", "--remote", "-o", "json")
	if r.code != 0 || strings.Contains(r.stdout, `"problem"`) {
		fatalf(t, "deployed certificates: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "init", "--only", "certs")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "re-running changed something:\n%s", r.stdout)
	}
	// a worker's keys are its own kubelet's serving key and the API load balancer's health-check key (which may
	// read health endpoints only): no CA key, no other component's
	r = run(t, l, "exec", "--role", "worker", "--", "find /etc/kubernetes -type f -name '*.key' ! -path /etc/kubernetes/pki/kubelet.key ! -path /etc/kubernetes/pki/api-lb.key | wc -l")
	if r.code != 0 || strings.Count(r.stdout, "\n  0\n") != 2 {
		errorf(t, "workers must hold no key files but their kubelet's and the API load balancer's:\n%s", r.stdout)
	}
}

func TestHostFaults(t *testing.T) {
	l := newLab(t, 2)
	if err := l.Kill(2); err != nil {
		fatal(t, err)
	}
	r := run(t, l, "exec", "--", "true")
	if r.code != 4 || !strings.Contains(r.stdout, "h2 | UNREACHABLE") || !strings.Contains(r.stdout, "h1 | exit 0") {
		fatalf(t, "a killed host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := l.Cut(1); err != nil {
		fatal(t, err)
	}
	start := time.Now()
	r = run(t, l, "exec", "--hosts", "h1", "--", "true")
	if r.code != 4 {
		fatalf(t, "a cut-off host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("cut-off host reported unreachable after %s", time.Since(start).Round(time.Millisecond))
	if err := l.Restore(1); err != nil {
		fatal(t, err)
	}
	if r = run(t, l, "exec", "--hosts", "h1", "--", "true"); r.code != 0 {
		errorf(t, "after restoring the link: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestBundleOnLabHosts(t *testing.T) {
	l := newLab(t, 3)
	hello, _ := filepath.Abs("../bundle/testdata/hello")
	spec := filepath.Join(l.Dir, "bundle.yaml")
	os.WriteFile(spec, []byte(`apiVersion: privcloud.io/v1alpha1
kind: Bundle
metadata: {name: e2e}
spec:
  components:
  - name: hello
    version: v0.0.0
    go: {module: example.local/hello, version: v0.0.0, replace: {example.local/hello: `+hello+`}}
  - {name: hello-image, version: "1", roles: [worker], image: {ref: "registry.local/hello:1", fromBinary: [hello]}}
`), 0o600)
	// the lab's cluster.yaml takes the bundle from its default place next to it
	build := exec.Command(privcloud, "bundle", "build", "-f", spec, "-o", filepath.Join(l.Dir, "privcloud-bundle.tar.zst"), "--cache", filepath.Join(l.Dir, "cache"))
	if out, err := build.CombinedOutput(); err != nil {
		fatalf(t, "bundle build: %v\n%s", err, out)
	}
	r := run(t, l, "init", "--only", "bundle")
	if r.code != 0 {
		fatalf(t, "init --only bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--", "/opt/privcloud/hello/v0.0.0/hello")
	if r.code != 0 || strings.Count(r.stdout, "hello from the bundle") != 3 {
		fatalf(t, "the bundle's binary does not run on every host:\n%s%s", r.stdout, r.stderr)
	}
	r = run(t, l, "init", "--only", "bundle")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "re-sending an unchanged bundle changed something:\n%s", r.stdout)
	}
}

// runtimeBundle describes containerd, its shim, ctr, runc and a test image, built from source as the lab
// bundle builds them (so both share the build cache).
func runtimeBundle(t *testing.T, dir string) string {
	t.Helper()
	repo, _ := filepath.Abs("..")
	spec := filepath.Join(dir, "bundle.yaml")
	os.WriteFile(spec, []byte(`apiVersion: privcloud.io/v1alpha1
kind: Bundle
metadata: {name: runtime}
spec:
  components:
  - {name: containerd, version: v2.2.1, go: {module: github.com/containerd/containerd/v2, version: v2.2.1, package: github.com/containerd/containerd/v2/cmd/containerd}}
  - {name: containerd-shim-runc-v2, version: v2.2.1, go: {module: github.com/containerd/containerd/v2, version: v2.2.1, package: github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2}}
  - {name: ctr, version: v2.2.1, go: {module: github.com/containerd/containerd/v2, version: v2.2.1, package: github.com/containerd/containerd/v2/cmd/ctr}}
  - {name: runc, version: v1.3.0, go: {module: github.com/opencontainers/runc, version: v1.3.0, cgo: true, tags: [seccomp]}}
  - {name: probe, version: v0.0.0, imageOnly: true, go: {module: github.com/privcloud/privcloud, version: v0.0.0, package: github.com/privcloud/privcloud/assets/probe, replace: {github.com/privcloud/privcloud: `+repo+`}}}
  - {name: test, version: "1", image: {ref: "registry.local/privcloud/test:1", fromBinary: [probe]}}
`), 0o600)
	out := filepath.Join(dir, "privcloud-bundle.tar.zst")
	home, _ := os.UserHomeDir()
	build := exec.Command(privcloud, "bundle", "build", "-f", spec, "-o", out, "--cache", filepath.Join(home, ".cache/privcloud/bundle"))
	if data, err := build.CombinedOutput(); err != nil {
		fatalf(t, "bundle build: %v\n%s", err, data)
	}
	return out
}

func TestContainerdOnLabHost(t *testing.T) {
	l := newLab(t, 1)
	runtimeBundle(t, l.Dir)
	r := run(t, l, "init", "--only", "bundle,containerd")
	if r.code != 0 {
		fatalf(t, "init --only bundle,containerd: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "imported registry.local/privcloud/test:1") {
		errorf(t, "the image import was not reported:\n%s", r.stdout)
	}
	// the image streamed in through the SSH connection runs under runc
	r = run(t, l, "exec", "--", "ctr -n k8s.io run --rm registry.local/privcloud/test:1 e2e-probe /bin/probe dns 127.0.0.1")
	if r.code != 0 || !strings.Contains(r.stdout, "127.0.0.1") {
		fatalf(t, "running the imported image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "init", "--only", "bundle,containerd")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "a converged runtime changed on the second run:\n%s", r.stdout)
	}
}

// labBundle builds, into dir/privcloud-bundle.tar.zst, the lab bundle's components whose names are listed
// (same specs, so it shares `make bundle`'s cache), with Kubernetes v1.37.1.
func labBundle(t *testing.T, dir string, names ...string) {
	t.Helper()
	labBundleOf(t, dir, []string{"v1.37.1"}, names...)
}

// labBundleOf is labBundle with the Kubernetes releases listed.
func labBundleOf(t *testing.T, dir string, kubernetes []string, names ...string) {
	t.Helper()
	buildLabBundle(t, filepath.Join(dir, "privcloud-bundle.tar.zst"), kubernetes, "", names...)
}

// buildLabBundle writes to out a bundle of the lab's components named, with the Kubernetes releases listed and,
// when etcd is not "", etcd, etcdctl and etcdutl at that version instead of the lab's.
func buildLabBundle(t *testing.T, out string, kubernetes []string, etcd string, names ...string) {
	t.Helper()
	// scenarios that ask for the same bundle share one file: packing 800 MB again costs a minute
	key := fmt.Sprintf("%v %s %v", kubernetes, etcd, names)
	shared, ok := builtBundles[key]
	if !ok {
		shared = filepath.Join(filepath.Dir(privcloud), fmt.Sprintf("bundle-%d.tar.zst", len(builtBundles)))
		packLabBundle(t, shared, kubernetes, etcd, names...)
		builtBundles[key] = shared
	}
	if err := os.Link(shared, out); err != nil {
		fatalf(t, "bundle: %v", err)
	}
}

// builtBundles are the bundles the suite has built, by what they hold.
var builtBundles = map[string]string{}

// packLabBundle builds the bundle buildLabBundle describes.
func packLabBundle(t *testing.T, out string, kubernetes []string, etcd string, names ...string) {
	t.Helper()
	b, err := api.LoadBundle("lab/bundle.yaml")
	if err != nil {
		fatal(t, err)
	}
	previous, err := api.LoadBundle("lab/upgrade-bundle.yaml")
	if err != nil {
		fatal(t, err)
	}
	b.Spec.Components = append(b.Spec.Components, previous.Spec.Components...)
	kept := b.Spec.Components[:0]
	for _, c := range b.Spec.Components {
		release := c.Go != nil && c.Go.Module == "k8s.io/kubernetes" // one of the Kubernetes releases listed
		if slices.Contains(names, c.Name) && (!release || slices.Contains(kubernetes, c.Version)) {
			if etcd != "" && strings.HasPrefix(c.Name, "etcd") {
				c.Version, c.Go.Version, c.Go.StagingVersion = etcd, etcd, etcd
			}
			kept = append(kept, c)
		}
	}
	if slices.Contains(names, "pulled") {
		kept = append(kept, api.Component{Name: "pulled", Version: "1", Image: &api.Image{Ref: pulledImageRef, Pull: pulledImagePull}})
	}
	b.Spec.Components = kept
	home, _ := os.UserHomeDir()
	builder := &bundlebuild.Builder{Cache: filepath.Join(home, ".cache/privcloud/bundle")}
	if _, err := builder.Build(context.Background(), b, out); err != nil {
		fatalf(t, "bundle: %v", err)
	}
}

func TestControlPlaneOnLabHost(t *testing.T) {
	l := newLab(t, 1)
	labBundle(t, l.Dir, "etcd", "etcdctl", "etcdutl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
	const phases = "bundle,certs,etcd,control-plane,cluster-rbac"
	r := run(t, l, "init", "--only", phases)
	// etcd's phase works through its members: the first run changes them
	if r.code != 0 || !strings.Contains(r.stdout, "changed  etcd") || !strings.Contains(r.stdout, "ok       control-plane/scheduler") {
		fatalf(t, "etcd and the control plane: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// the admin kubeconfig's group is bound to cluster-admin; the controller-manager and scheduler lead
	r = run(t, l, "exec", "--", "kubectl --kubeconfig /etc/kubernetes/admin.conf auth can-i '*' '*'; "+
		"kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get leases -o name")
	if !strings.Contains(r.stdout, "yes") || !strings.Contains(r.stdout, "lease.coordination.k8s.io/kube-controller-manager") ||
		!strings.Contains(r.stdout, "lease.coordination.k8s.io/kube-scheduler") {
		errorf(t, "admin access and leader leases:\n%s%s", r.stdout, r.stderr)
	}
	// etcd answers over TLS with a client certificate, and refuses a client without one
	r = run(t, l, "exec", "--", etcdctlCmd+"endpoint health; "+
		"etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --command-timeout=3s endpoint health >/dev/null 2>&1 && echo ANONYMOUS-OK || echo anonymous-refused")
	if !strings.Contains(r.stdout, "is healthy") || !strings.Contains(r.stdout, "anonymous-refused") {
		errorf(t, "etcd over TLS:\n%s%s", r.stdout, r.stderr)
	}
	// the API server has no insecure port and refuses anonymous requests
	r = run(t, l, "exec", "--", "curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:6443/readyz; echo; curl -s -m 3 http://127.0.0.1:8080/ >/dev/null && echo INSECURE-OPEN || echo no-insecure-port")
	if !strings.Contains(r.stdout, "401") || !strings.Contains(r.stdout, "no-insecure-port") {
		errorf(t, "kube-apiserver must refuse anonymous requests and have no insecure port:\n%s", r.stdout)
	}
	r = run(t, l, "init", "--only", phases)
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "a converged control plane changed (or restarted) on the second run:\n%s", r.stdout)
	}
	// a lone member comes back from a backup as well (no kubelet runs here, so no node to wait for)
	checkBackupRestore(t, l, "kubectl --kubeconfig /etc/kubernetes/admin.conf ", "h1", 0, "--skip", "wait-ready")
}

// clusterComponents are the lab bundle's components a whole cluster with its add-ons needs.
var clusterComponents = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "cni-bridge", "cni-host-local", "cni-loopback", "cni-portmap", "cni-flannel", "flanneld",
	"cni-macvlan", "cni-static", "cni-multus", "privcloud-api-lb", "kube-router", "etcd", "etcdctl", "etcdutl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl",
	"pause-bin", "pause", "probe", "busybox", "test", "coredns-bin", "coredns", "quay", "postgresql", "redis", "pulled"}

func TestClusterOnLabHosts(t *testing.T) {
	// h1 to h3 make the cluster; h4 and h5 join it later as control planes with etcd members. h3 and h5 sit on
	// a second subnet behind a router: the pod network, etcd and the API load balancers cross it
	l := newRoutedLab(t, 5, []int{3, 5}, 1, 4, 5)
	full, err := os.ReadFile(l.ClusterConfig())
	if err != nil {
		fatal(t, err)
	}
	full = []byte(withMonitoring(t, string(full)))
	if err := os.WriteFile(l.ClusterConfig(), []byte(withoutHosts(t, string(full), "h4", "h5")), 0o600); err != nil {
		fatal(t, err)
	}
	labBundle(t, l.Dir, slices.Concat(clusterComponents, monitoringComponents)...)
	start := time.Now()
	r := run(t, l, "init")
	if r.code != 0 {
		fatalf(t, "init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("init of 3 nodes: %s", time.Since(start).Round(100*time.Millisecond))

	// the admin kubeconfig written next to cluster.yaml reaches /readyz from this machine, over verified TLS
	kubeconfig := filepath.Join(l.Dir, "kubeconfig")
	if fi, err := os.Stat(kubeconfig); err != nil || fi.Mode().Perm() != 0o600 {
		fatalf(t, "admin kubeconfig: %v", err)
	}
	cert, ca, err := pki.Credentials(kubeconfig)
	if err != nil {
		fatal(t, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	resp, err := client.Get("https://" + lab.HostIP(1) + ":6443/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		fatalf(t, "/readyz through the admin kubeconfig: %v %v", resp, err)
	}
	resp.Body.Close()

	// the seed's smoke test: a pod of the bundle's test image is scheduled, runs, answers exec, is deleted
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes --no-headers; "+
		kubectl+"run smoke --image=registry.local/privcloud/test:1 --image-pull-policy=Never --restart=Never --command -- /bin/probe serve && "+
		kubectl+"wait --for=condition=Ready pod/smoke --timeout=120s && "+
		kubectl+"exec smoke -- /bin/probe get http://127.0.0.1:8080/ && "+
		kubectl+"delete pod smoke --wait=true --timeout=60s")
	if r.code != 0 || strings.Count(r.stdout, " Ready ") != 3 || !strings.Contains(r.stdout, "pod/smoke condition met") ||
		!strings.Contains(r.stdout, "smoke\n") || !strings.Contains(r.stdout, `pod "smoke" deleted`) {
		fatalf(t, "smoke test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// the image the bundle pulled from a registry (by the digest of a two-platform index) runs in a pod
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"run pulled --image="+pulledImageRef+" --image-pull-policy=Never --restart=Never "+
		"--command -- sh -c 'echo the pulled image runs' && "+
		kubectl+"wait --for=jsonpath='{.status.phase}'=Succeeded pod/pulled --timeout=120s && "+kubectl+"logs pulled && "+
		kubectl+"delete pod pulled --wait=true --timeout=60s")
	if r.code != 0 || !strings.Contains(r.stdout, "the pulled image runs") {
		errorf(t, "a pod of the pulled image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// the RuntimeClass exists with its handler and overhead, and every node's runtime reports the kata handler
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get runtimeclass kata -o jsonpath='{.handler} {.overhead.podFixed.memory}{\"\\n\"}'; "+
		kubectl+"get nodes -o jsonpath='{range .items[*]}{.metadata.name}: {.status.runtimeHandlers[*].name}{\"\\n\"}{end}'")
	if !strings.Contains(r.stdout, "kata 160Mi") || strings.Count(r.stdout, "kata") < 4 {
		errorf(t, "kata RuntimeClass and handlers:\n%s%s", r.stdout, r.stderr)
	}
	checkHardening(t, l, kubectl)
	checkAddons(t, l, kubectl)
	checkNetworkPolicy(t, l, kubectl)
	checkPodNetwork(t, l, kubectl)
	checkRegistryMirror(t, l, kubectl)
	prom := checkMonitoring(t, l)
	checkStatus(t, l, func() { prom.waitForAlert(t, l, "TargetDown", "kubelet", "h2") }, "h1", "h2", "h3")

	start = time.Now()
	r = run(t, l, "init")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "re-running init on a converged cluster changed something:\n%s", r.stdout)
	}
	t.Logf("no-op re-run: %s", time.Since(start).Round(100*time.Millisecond))

	checkUpgradePlan(t, l)
	checkMembershipUnderLoad(t, l, func() { checkControlPlaneJoin(t, l, kubectl, full) })
	checkResetAndJoin(t, l, kubectl)
	checkControlPlaneLoss(t, l, kubectl)
	checkBackupRestore(t, l, kubectl, "h1,h4,h5", 5)
	config := checkReconfiguration(t, l, []string{"h1", "h4", "h5"}, 5)
	checkCertRenewal(t, l, config, []string{"h1", "h4", "h5"})
	checkKeyRotation(t, l, config, []string{"h1", "h4", "h5"})
	checkCARotation(t, l, config, []string{"h1", "h4", "h5"})
	checkMonitoringAfterChanges(t, l, config)
}

// checkResetAndJoin resets one worker while the cluster keeps running, checks the host is clean, then joins
// it again.
func checkResetAndJoin(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get node h3 -o jsonpath='{.spec.podCIDR}{\"\\n\"}'")
	h3PodCIDR := regexp.MustCompile(`[0-9.]+/[0-9]+`).FindString(r.stdout)
	if h3PodCIDR == "" {
		fatalf(t, "h3's pod CIDR: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	start := time.Now()
	r = run(t, l, "reset", "--hosts", "h3")
	if r.code != 0 || !strings.Contains(r.stdout, "drained and deleted node h3") {
		fatalf(t, "reset --hosts h3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("reset of a worker: %s", time.Since(start).Round(100*time.Millisecond))
	r = run(t, l, "exec", "--hosts", "h3", "--", `for u in kubelet kube-proxy containerd privcloud-flannel privcloud-kube-router privcloud-metrics; do systemctl is-active -q $u && echo "active: $u"; done
for p in /etc/kubernetes /var/lib/kubelet /var/lib/containerd /etc/containerd /opt/privcloud /var/lib/privcloud /etc/cni/net.d /var/lib/cni /run/flannel /usr/local/bin/kubelet; do
  if mountpoint -q $p; then [ -n "$(ls -A $p)" ] && echo "left: $p (content)"; else [ -e $p ] && echo "left: $p"; fi
done
grep -E ' /(var/lib/kubelet|run/containerd|var/lib/containerd)/' /proc/mounts | sed 's/^/mount: /'
pgrep -x containerd-shim >/dev/null && echo "left: shims"
for link in cni0 flannel.1; do ip link show $link >/dev/null 2>&1 && echo "left: $link"; done
ip route show | grep ' via ' | grep -v '^default' | sed 's/^/left: route /'
iptables-save | grep -cE 'KUBE-|CNI-|FLANNEL-|PRIVCLOUD-' | sed 's/^/kube-rules: /'
iptables-save -t mangle | grep -c 'DROP' | sed 's/^/lab-guard: /'`)
	if r.code != 0 || strings.Contains(r.stdout, "active:") || strings.Contains(r.stdout, "left:") || strings.Contains(r.stdout, "mount:") ||
		!strings.Contains(r.stdout, "kube-rules: 0") || !strings.Contains(r.stdout, "lab-guard: 1") {
		errorf(t, "h3 after reset is not clean (or lost the lab's own rule):\n%s%s", r.stdout, r.stderr)
	}
	r = run(t, l, "reset", "--hosts", "h3")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "a second reset changed something:\n%s%s", r.stdout, r.stderr)
	}
	// the nodes that stay have no route left to h3's pods: flannel took it away with h3's Node
	waitFor(t, "no overlay route to h3's pods on h1 and h2", 60*time.Second, func() bool {
		r = run(t, l, "exec", "--hosts", "h1,h2", "--", "ip route show dev flannel.1")
		return r.code == 0 && !strings.Contains(r.stdout, h3PodCIDR) && strings.Count(r.stdout, " via ") == 6
	})
	if r.code != 0 || strings.Contains(r.stdout, h3PodCIDR) || strings.Count(r.stdout, " via ") != 6 {
		errorf(t, "overlay routes on h1 and h2 after h3 left (3 each, to h2/h1, h4 and h5, none to %s):\n%s%s", h3PodCIDR, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes --no-headers")
	if strings.Contains(r.stdout, "h3") || strings.Count(r.stdout, " Ready ") != 4 {
		errorf(t, "after reset the cluster has every node but h3:\n%s", r.stdout)
	}

	start = time.Now()
	r = run(t, l, "join")
	if r.code != 0 || !strings.Contains(r.stdout, "joining: h3") {
		fatalf(t, "join: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("join of a worker: %s", time.Since(start).Round(100*time.Millisecond))
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes --no-headers")
	if strings.Count(r.stdout, " Ready ") != 5 {
		errorf(t, "after join all 5 nodes are Ready:\n%s", r.stdout)
	}
}

// checkAddons proves the add-ons work from inside pods: cluster names and a Service name resolve through
// CoreDNS, two pods on different nodes reach each other over Multus's second interface (on top of the pod
// network), and Quay's manifests
// pass the API server's checks while the add-on refuses to run without its images.
func checkAddons(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	pod := func(name, node, ip string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: %s}
  annotations:
    k8s.v1.cni.cncf.io/networks: '[{"name": "lab-macvlan", "ips": ["%s"]}]'
spec:
  nodeName: %s
  tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
  containers:
  - {name: probe, image: registry.local/privcloud/test:1, imagePullPolicy: Never, command: [/bin/probe, serve]}
---
`, name, name, ip, node)
	}
	// macvlan is a layer-2 network: its two pods sit on nodes of one segment (h1 and h2; h3 is routed)
	manifests := pod("net-a", "h1", "10.77.1.10/24") + pod("net-b", "h2", "10.77.1.11/24") +
		"apiVersion: v1\nkind: Service\nmetadata: {name: net-b}\nspec:\n  selector: {app: net-b}\n  ports: [{port: 8080}]\n"
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"apply -f - <<'EOF'\n"+manifests+"EOF\n"+
		kubectl+"wait --for=condition=Ready pod/net-a pod/net-b --timeout=120s && "+
		kubectl+"exec net-a -- /bin/ip -4 addr show net1 && "+
		kubectl+"exec net-a -- /bin/probe get http://10.77.1.11:8080/ && "+
		kubectl+"exec net-a -- /bin/probe dns kubernetes.default.svc.cluster.local && "+
		kubectl+"exec net-a -- /bin/probe dns net-b && "+
		kubectl+"exec net-a -- /bin/probe get http://net-b.default.svc.cluster.local:8080/ && "+
		// Multus's plugin records the pod's interfaces in its status with the node's own credential
		kubectl+`get pod net-a -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/network-status}{"\n"}' && `+
		kubectl+"get daemonsets -n kube-system -o name")
	t.Logf("add-on checks:\n%s", r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "inet 10.77.1.10/24") || strings.Count(r.stdout, "net-b\n") < 2 ||
		!strings.Contains(r.stdout, "10.96.0.1\n") || !strings.Contains(r.stdout, `"name": "default/lab-macvlan"`) || strings.Contains(r.stdout, "daemonset.apps/kube-multus-ds") {
		errorf(t, "CoreDNS and Multus from a pod: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "addons", "status")
	if r.code != 0 || !regexp.MustCompile(`(?m)^coredns +ready`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^multus +ready`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^kata +ready`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^quay +disabled`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^monitoring +ready`).MatchString(r.stdout) {
		errorf(t, "addons status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Quay enabled: its certificate is made, its objects are dry-run on the server, and it fails on the
	// bundle's absent images without storing anything
	withQuay := configVariant(t, l, "cluster-quay.yaml", "  addons:\n", "  addons:\n    quay: {enabled: true, hostname: registry.lab.example}\n")
	r = runConfig(t, withQuay, "addons", "apply", "quay")
	if r.code != 5 || !strings.Contains(r.stderr, "the API server accepted all 10 objects, 10 would change") ||
		!strings.Contains(r.stderr, "the bundle records quay 3.12 (quay.io/projectquay/quay:v3.12.0) as absent") {
		errorf(t, "addons apply quay without its images: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get namespace quay")
	if !strings.Contains(r.stdout+r.stderr, "NotFound") {
		errorf(t, "the dry run stored Quay's namespace:\n%s%s", r.stdout, r.stderr)
	}
	// nothing stands in for Quay: status names each image the bundle lacks and never calls it ready
	r = runConfig(t, withQuay, "addons", "status")
	if r.code != 5 || !regexp.MustCompile(`(?m)^quay +NOT READY`).MatchString(r.stdout) ||
		!strings.Contains(r.stdout, "image missing: the bundle records quay 3.12 (quay.io/projectquay/quay:v3.12.0) as absent") ||
		!strings.Contains(r.stdout, "image missing: the bundle records postgresql 15 (docker.io/library/postgres:15) as absent") ||
		!strings.Contains(r.stdout, "image missing: the bundle records redis 7 (docker.io/library/redis:7) as absent") {
		errorf(t, "addons status with Quay enabled and its images absent: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// checkRegistryMirror serves the test image from a registry on the machine's lab address, declares it as the
// mirror of a registry name that resolves nowhere, and has a pod on a worker pull the image by that name: the
// node's containerd can only have gone through the mirror entry. Dropping the mirror from cluster.yaml removes
// the entry again.
func checkRegistryMirror(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	ln, err := net.Listen("tcp", lab.GatewayIP+":0")
	if err != nil {
		fatal(t, err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	defer srv.Close()
	image := pushTestImage(t, filepath.Join(l.Dir, "privcloud-bundle.tar.zst"), ln.Addr().String()+"/privcloud/test:mirror")

	mirror := fmt.Sprintf("  containerd:\n    registryMirrors:\n    - {registry: mirror.lab.example, endpoints: [\"http://%s\"]}\n", ln.Addr())
	withMirror := configVariant(t, l, "cluster-mirror.yaml", "  containerd:\n", mirror)
	r := runConfig(t, withMirror, "init", "--only", "containerd")
	if r.code != 0 || strings.Count(r.stdout, "/etc/containerd/certs.d/mirror.lab.example/hosts.toml") != 3 {
		fatalf(t, "init --only containerd with a mirror: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"run mirrored --image=mirror.lab.example/privcloud/test:mirror "+
		"--overrides='{\"spec\":{\"nodeName\":\"h2\"}}' --restart=Never --command -- /bin/probe serve && "+
		kubectl+"wait --for=condition=Ready pod/mirrored --timeout=120s; "+
		kubectl+"get pod mirrored -o jsonpath='{.status.containerStatuses[0].imageID}{\"\\n\"}'; "+
		kubectl+"delete pod mirrored --wait=true --timeout=60s")
	if r.code != 0 || !strings.Contains(r.stdout, "pod/mirrored condition met") || !strings.Contains(r.stdout, image) {
		errorf(t, "a pod pulling through the mirror (%s): exit %d\n%s%s", image, r.code, r.stdout, r.stderr)
	}

	r = run(t, l, "init", "--only", "containerd")
	if r.code != 0 || strings.Count(r.stdout, "removed /etc/containerd/certs.d/mirror.lab.example/hosts.toml") != 3 {
		errorf(t, "init without the mirror keeps its entry: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// pushTestImage copies the bundle's test image, relabelled so that it has a digest of its own, to ref on a
// plain-HTTP registry and returns that digest. The same digest pulled under a second name makes the kubelet
// (KubeletEnsureSecretPulledImages, kubernetes/kubernetes#138175) stop treating the bundle's preloaded name as
// preloaded: its pods on that node would then try to pull it from a registry the lab cannot reach.
func pushTestImage(t *testing.T, bundlePath, ref string) string {
	t.Helper()
	br, err := bundle.Open(bundlePath)
	if err != nil {
		fatal(t, err)
	}
	c := br.Manifest.Find("test", "")
	br.Close()
	if c == nil {
		fatal(t, "the lab bundle has no test image")
	}
	dir := t.TempDir()
	paths, err := bundle.Extract(bundlePath, dir, func(p string) bool { return p == c.Path })
	if err != nil || len(paths) != 1 {
		fatalf(t, "extract %s: %v", c.Path, err)
	}
	img, err := tarball.ImageFromPath(paths[0], nil)
	if err != nil {
		fatal(t, err)
	}
	if img, err = relabelled(img, "privcloud.e2e/copy", ref); err != nil {
		fatal(t, err)
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		fatal(t, err)
	}
	if err := remote.Write(tag, img); err != nil {
		fatalf(t, "push %s: %v", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		fatal(t, err)
	}
	return digest.String()
}

// relabelled is img with the configuration label key=value, so a new config and manifest digest over the
// same layers.
func relabelled(img v1.Image, key, value string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg := cf.Config.DeepCopy()
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[key] = value
	return mutate.Config(img, *cfg)
}

// etcdctlCmd runs etcdctl on an etcd member with the healthcheck client's certificate.
const etcdctlCmd = "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt " +
	"--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key "

// withoutHosts is a lab cluster.yaml without the named hosts' entries.
func withoutHosts(t *testing.T, config string, names ...string) string {
	t.Helper()
	got := lab.KeepHosts(config, func(name string) bool { return !slices.Contains(names, name) })
	if strings.Count(config, "  - name: ")-strings.Count(got, "  - name: ") == len(names) {
		return got
	}
	fatalf(t, "cluster.yaml lacks some of %v:\n%s", names, config)
	return ""
}

// checkControlPlaneJoin joins two control-plane hosts to the running cluster: etcd grows from 1 member to 2,
// then 3, each new member added as a learner and promoted once it caught up, and the new API servers answer.
func checkControlPlaneJoin(t *testing.T, l *lab.Lab, kubectl string, full []byte) {
	t.Helper()
	if err := os.WriteFile(l.ClusterConfig(), full, 0o600); err != nil {
		fatal(t, err)
	}
	start := time.Now()
	r := run(t, l, "join")
	if r.code != 0 || !strings.Contains(r.stdout, "joining: h4, h5") || !strings.Contains(r.stdout, "(2 voting members)") ||
		!strings.Contains(r.stdout, "(3 voting members)") {
		fatalf(t, "join of h4 and h5: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("join of two control planes: %s", time.Since(start).Round(100*time.Millisecond))
	for _, line := range strings.Split(r.stdout, "\n") {
		// only its routes to the new nodes' pods change
		if f := strings.Fields(line); len(f) > 3 && f[2] == "h1" && strings.Contains(line, "restarted") && !strings.Contains(line, "pod-routes") {
			errorf(t, "joining control planes restarted a service of the running one: %s", line)
		}
	}
	etcdctl := etcdctlCmd
	r = run(t, l, "exec", "--hosts", "h5", "--", etcdctl+"member list -w simple && "+etcdctl+"endpoint health --cluster")
	if r.code != 0 || strings.Count(r.stdout, ", started, h") != 3 || strings.Count(r.stdout, ", false\n") != 3 ||
		strings.Count(r.stdout, "is healthy") != 3 {
		errorf(t, "etcd has 3 started voting members, all healthy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "exec", "--hosts", "h1,h4,h5", "--", kubectl+"--server https://127.0.0.1:6443 get --raw /readyz && echo && "+
		kubectl+"--server https://127.0.0.1:6443 get nodes --no-headers")
	if r.code != 0 || strings.Count(r.stdout, "\n  ok\n") != 3 || strings.Count(r.stdout, " Ready ") != 15 {
		errorf(t, "every control plane's API server is ready and sees 5 Ready nodes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, l, "join")
	if r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "a second join changed something: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// a control plane leaves (its member removed through one that stays) and comes back as a new member
	start = time.Now()
	r = run(t, l, "reset", "--hosts", "h5")
	if r.code != 0 || !strings.Contains(r.stdout, "removed etcd member") {
		fatalf(t, "reset --hosts h5: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("reset of a control plane: %s", time.Since(start).Round(100*time.Millisecond))
	if time.Since(start) > 30*time.Second {
		t.Logf("the slow reset's report:\n%s", r.stdout)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", etcdctl+"member list -w simple")
	if r.code != 0 || strings.Count(r.stdout, ", started, h") != 2 || strings.Contains(r.stdout, "h5") {
		errorf(t, "after reset etcd has h1 and h4 only: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	start = time.Now()
	r = run(t, l, "join")
	if r.code != 0 || !strings.Contains(r.stdout, "joining: h5") || !strings.Contains(r.stdout, "(3 voting members)") {
		fatalf(t, "join of h5 again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("join of a reset control plane: %s", time.Since(start).Round(100*time.Millisecond))
	r = run(t, l, "exec", "--hosts", "h1", "--", etcdctl+"endpoint health --cluster && "+kubectl+"get nodes --no-headers")
	if r.code != 0 || strings.Count(r.stdout, "is healthy") != 3 || strings.Count(r.stdout, " Ready ") != 5 {
		errorf(t, "after the rejoin 3 healthy members and 5 Ready nodes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// checkBackupRestore backs the cluster up, destroys the data of every etcd member (members, comma-separated),
// and restores (with restoreArgs): what existed at the backup is back, what came after it is gone, every member
// is healthy and the cluster has its nodes Ready nodes again.
func checkBackupRestore(t *testing.T, l *lab.Lab, kubectl, members string, nodes int, restoreArgs ...string) {
	t.Helper()
	n := strings.Count(members, ",") + 1
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"create configmap before-backup --from-literal=k=v")
	if r.code != 0 {
		fatalf(t, "create configmap: %s%s", r.stdout, r.stderr)
	}
	file := filepath.Join(l.Dir, "lab-backup.tar.zst")
	start := time.Now()
	r = run(t, l, "backup", "--out", file)
	if r.code != 0 || !strings.Contains(r.stdout, "wrote "+file) {
		fatalf(t, "backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("backup: %s", time.Since(start).Round(100*time.Millisecond))
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		errorf(t, "the backup holds the CA keys and must be 0600: %v", err)
	}
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"create configmap after-backup --from-literal=k=v")
	if r.code != 0 {
		fatalf(t, "create configmap: %s%s", r.stdout, r.stderr)
	}
	// the disaster: every member's data is gone (the API server stops first: one whose etcd went away hangs in
	// its shutdown until systemd's stop timeout)
	r = run(t, l, "exec", "--hosts", members, "--", "systemctl stop kube-apiserver && systemctl stop etcd && rm -rf /var/lib/etcd")
	if r.code != 0 {
		fatalf(t, "destroy etcd data: %s%s", r.stdout, r.stderr)
	}
	start = time.Now()
	r = run(t, l, append([]string{"restore", file}, restoreArgs...)...)
	if r.code != 0 || strings.Count(r.stdout, "restored the etcd snapshot into /var/lib/etcd") != n {
		fatalf(t, "restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("restore of %d etcd members: %s", n, time.Since(start).Round(100*time.Millisecond))
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get configmap before-backup -o jsonpath='{.data.k}{\"\\n\"}'; "+
		kubectl+"get configmap after-backup; "+etcdctlCmd+"endpoint health --cluster; "+kubectl+"get nodes --no-headers")
	if !strings.Contains(r.stdout, "\n  v\n") || !strings.Contains(r.stdout+r.stderr, `"after-backup" not found`) ||
		strings.Count(r.stdout, "is healthy") != n || strings.Count(r.stdout, " Ready ") != nodes {
		errorf(t, "after the restore: the object of before the backup, none of after, %d healthy members, %d Ready nodes:\n%s%s", n, nodes, r.stdout, r.stderr)
	}
}

// checkUpgradePlan reads the versions the hosts run: the cluster is current, and a downgrade is refused.
func checkUpgradePlan(t *testing.T, l *lab.Lab) {
	t.Helper()
	r := run(t, l, "upgrade", "plan")
	if r.code != 0 || !strings.Contains(r.stdout, "every host runs v1.37.1: nothing to upgrade") {
		errorf(t, "upgrade plan on a current cluster: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	older := configVariant(t, l, "cluster-older.yaml", "kubernetesVersion: v1.37.1", "kubernetesVersion: v1.36.3")
	r = runConfig(t, older, "upgrade", "plan")
	if r.code != 5 || !strings.Contains(r.stdout, "v1.36.3 is older than the cluster's v1.37.1: downgrades are not supported") ||
		!strings.Contains(r.stdout, "h1           control-plane,etcd       kube-apiserver           v1.37.1    v1.36.3") {
		errorf(t, "upgrade plan of a downgrade: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// configVariant writes a copy of the lab's cluster.yaml named name, next to it, with old replaced by new.
func configVariant(t *testing.T, l *lab.Lab, name, old, new string) string {
	t.Helper()
	data, err := os.ReadFile(l.ClusterConfig())
	if err != nil || !strings.Contains(string(data), old) {
		fatalf(t, "cluster.yaml lacks %q: %v", old, err)
	}
	path := filepath.Join(l.Dir, name)
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600); err != nil {
		fatal(t, err)
	}
	return path
}
