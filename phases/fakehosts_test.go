package phases

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	ctrtypes "github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// dialHost is a fake host whose Dial reaches in-process stand-ins for the services on it (the API server,
// containerd), the way the real transport dials through the SSH connection.
type dialHost struct {
	*sshtest.Fake
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (h *dialHost) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return h.dial(ctx, network, addr)
}

// services routes each host's dials: the API server on control planes at 127.0.0.1:6443, containerd's socket
// on every host that has one. Anything else is refused, so a phase dialing the wrong place fails.
type services struct {
	api        *fakeAPI
	containerd map[string]*fakeContainerd
}

// connectThrough makes ex connect to the fakes through s.
func (s *services) connectThrough(ex *Execution, c *api.Cluster, hosts map[string]*sshtest.Fake) {
	ex.Connect = func(_ context.Context, h api.Host) (ssh.Host, error) {
		return &dialHost{Fake: hosts[h.Name], dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			switch {
			case network == "tcp" && addr == "127.0.0.1:6443" && h.HasRole(api.RoleControlPlane) && s.api != nil:
				return (&net.Dialer{}).DialContext(ctx, "tcp", s.api.srv.Listener.Addr().String())
			case network == "tcp" && (addr == "127.0.0.1:6445" || addr == "127.0.0.1:20244" || addr == "127.0.0.1:20245") && (h.HasRole(api.RoleControlPlane) || h.HasRole(api.RoleWorker)):
				return (&net.Dialer{}).DialContext(ctx, "tcp", nodeHealth(hosts[h.Name]))
			case network == "unix" && addr == containerdSocket && s.containerd[h.Name] != nil:
				return s.containerd[h.Name].lis.DialContext(ctx)
			}
			return nil, fmt.Errorf("%s: nothing listens on %s %s", h.Name, network, addr)
		}}, nil
	}
}

// nodeHealth is the address of a stand-in for the health endpoints of a node's own services: /healthz answers
// "ok" (the API load balancer, the NetworkPolicy firewall), /backends the API servers the host's
// /etc/kubernetes/api-lb.yaml lists, as a balancer that read it does.
func nodeHealth(h *sshtest.Fake) string {
	healthMu.Lock()
	defer healthMu.Unlock()
	if addr, ok := healthServers[h]; ok {
		return addr
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			fmt.Fprintln(w, "ok")
		case "/backends":
			conf, _, _ := h.File("/etc/kubernetes/api-lb.yaml")
			var st []map[string]any
			for _, line := range strings.Split(string(conf), "\n") {
				if a, ok := strings.CutPrefix(line, "- "); ok {
					st = append(st, map[string]any{"address": strings.Trim(a, `"`), "healthy": true})
				}
			}
			json.NewEncoder(w).Encode(st)
		default:
			http.NotFound(w, r)
		}
	}))
	healthServers[h] = srv.Listener.Addr().String()
	return healthServers[h]
}

var (
	healthMu      sync.Mutex
	healthServers = map[*sshtest.Fake]string{}
)

// fakeAPI answers the few API server requests the node and control-plane phases wait on: /readyz, Nodes and
// leader-election Leases. It serves the control plane's own certificate from the state directory, so the
// phases verify it with the cluster CA as they do a real one.
type fakeAPI struct {
	srv *httptest.Server

	mu       sync.Mutex
	nodes    map[string]*corev1.Node
	leases   map[string]string // name -> holder
	requests []string
}

func newFakeAPI(t *testing.T, c *api.Cluster, controlPlane string) *fakeAPI {
	t.Helper()
	store := PKIStore(c)
	cert, err := tls.LoadX509KeyPair(store.CertPath(pki.APIServerCert(controlPlane)), store.KeyPath(pki.APIServerCert(controlPlane)))
	if err != nil {
		t.Fatalf("the fake API server needs the PKI (run the certs phase first): %v", err)
	}
	a := &fakeAPI{nodes: map[string]*corev1.Node{}, leases: map[string]string{}}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

// addNode registers a node as its kubelet would; podCIDR "" is a node the controller-manager has not
// allocated a range to yet.
func (a *fakeAPI) addNode(h api.Host, podCIDR string, ready bool) {
	n := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: h.Name},
		Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.InternalAddress}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	a.mu.Lock()
	a.nodes[h.Name] = n
	a.mu.Unlock()
}

func (a *fakeAPI) holdLease(name, holder string) {
	a.mu.Lock()
	a.leases[name] = holder
	a.mu.Unlock()
}

func (a *fakeAPI) requested() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.requests...)
}

func (a *fakeAPI) serve(w http.ResponseWriter, req *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, req.Method+" "+req.URL.Path)
	reply := func(obj any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(obj)
	}
	notFound := func(kind, name string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: kind + " " + name + " not found",
			Details: &metav1.StatusDetails{Name: name, Kind: kind}})
	}
	p := req.URL.Path
	switch {
	case req.Method != http.MethodGet:
		http.Error(w, "the fake API server only reads", http.StatusMethodNotAllowed)
	case p == "/readyz":
		fmt.Fprint(w, "ok")
	case p == "/api/v1/nodes":
		list := corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}}
		for _, n := range a.nodes {
			list.Items = append(list.Items, *n)
		}
		reply(list)
	case strings.HasPrefix(p, "/api/v1/nodes/"):
		name := strings.TrimPrefix(p, "/api/v1/nodes/")
		if n, ok := a.nodes[name]; ok {
			reply(n)
		} else {
			notFound("nodes", name)
		}
	case strings.HasPrefix(p, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"):
		name := strings.TrimPrefix(p, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/")
		holder, ok := a.leases[name]
		if !ok {
			notFound("leases", name)
			return
		}
		reply(coordinationv1.Lease{TypeMeta: metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}})
	default:
		notFound("path", p)
	}
}

// fakeContainerd is containerd's API as far as privcloud uses it without pulling: its version, and the
// images it holds with their labels. Everything else answers Unimplemented.
type fakeContainerd struct {
	lis *bufconn.Listener

	mu     sync.Mutex
	images map[string]map[string]string // reference -> labels
	calls  []string
}

func newFakeContainerd(t *testing.T) *fakeContainerd {
	t.Helper()
	f := &fakeContainerd{lis: bufconn.Listen(1 << 20), images: map[string]map[string]string{}}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		f.mu.Lock()
		f.calls = append(f.calls, info.FullMethod)
		f.mu.Unlock()
		return h(ctx, req)
	}))
	versionapi.RegisterVersionServer(s, containerdVersion{})
	imagesapi.RegisterImagesServer(s, containerdImages{fakeContainerd: f})
	go s.Serve(f.lis)
	t.Cleanup(s.Stop)
	return f
}

func (f *fakeContainerd) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type containerdVersion struct {
	versionapi.UnimplementedVersionServer
}

func (containerdVersion) Version(context.Context, *emptypb.Empty) (*versionapi.VersionResponse, error) {
	return &versionapi.VersionResponse{Version: "v2.2.1"}, nil
}

type containerdImages struct {
	*fakeContainerd
	imagesapi.UnimplementedImagesServer
}

func (c containerdImages) Get(_ context.Context, req *imagesapi.GetImageRequest) (*imagesapi.GetImageResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	labels, ok := c.images[req.Name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "image %q: not found", req.Name)
	}
	return &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: req.Name, Labels: labels,
		Target: &ctrtypes.Descriptor{MediaType: "application/vnd.oci.image.index.v1+json", Digest: "sha256:" + strings.Repeat("ab", 32), Size: 1}}}, nil
}

func (c containerdImages) Update(_ context.Context, req *imagesapi.UpdateImageRequest) (*imagesapi.UpdateImageResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.images[req.Image.Name]; !ok {
		return nil, status.Errorf(codes.NotFound, "image %q: not found", req.Image.Name)
	}
	c.images[req.Image.Name] = req.Image.Labels
	return &imagesapi.UpdateImageResponse{Image: req.Image}, nil
}

// runStubbed runs script with /bin/sh and a PATH of stub commands only, so nothing on this machine is
// touched: each stub logs its call to "$STATE/calls" and then runs its body, which may keep state in
// $STATE and call real tools by absolute path (see realTool). It returns the script's output.
func runStubbed(t *testing.T, state, script string, stubs map[string]string) string {
	t.Helper()
	bin := filepath.Join(state, "bin")
	os.MkdirAll(bin, 0o755)
	for name, body := range stubs {
		stub := "#!/bin/sh\necho \"" + name + " $*\" >>\"$STATE/calls\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = []string{"PATH=" + bin, "STATE=" + state}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("script failed: %v\n%s\n%s", err, stderr.String(), script)
	}
	return stdout.String()
}

// calls is what the stubs of runStubbed were called with so far, one "name args" per call.
func calls(state string) []string {
	data, _ := os.ReadFile(filepath.Join(state, "calls"))
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// realTool is the absolute path of a tool of this machine, for stubs that need one (cat, grep).
func realTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is needed to run the script: %v", name, err)
	}
	return p
}

// events decodes a JSON reporter's output.
func events(t *testing.T, out *bytes.Buffer) []report.Event {
	t.Helper()
	var evs []report.Event
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e report.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not an event: %q", l)
		}
		evs = append(evs, e)
	}
	return evs
}

// changes lists the "changed" events of a run as "phase host message".
func changes(t *testing.T, out *bytes.Buffer) []string {
	t.Helper()
	var cs []string
	for _, e := range events(t, out) {
		if e.Status == report.Changed && e.Message != "" {
			cs = append(cs, e.Phase+" "+e.Host+" "+e.Message)
		}
	}
	return cs
}

// summary is the run's closing summary.
func summary(t *testing.T, out *bytes.Buffer) report.Summary {
	t.Helper()
	for _, e := range events(t, out) {
		if e.Status == report.Done && e.Summary != nil {
			return *e.Summary
		}
	}
	t.Fatalf("no summary in:\n%s", out.String())
	return report.Summary{}
}

// final is the event a phase ended with on host ("" for the phase's overall line): the one carrying its
// duration, or its skip.
func final(t *testing.T, out *bytes.Buffer, phase, host string) report.Event {
	t.Helper()
	var last report.Event
	for _, e := range events(t, out) {
		if e.Phase == phase && e.Host == host && (e.DurationMS != nil || e.Status == report.Skipped) {
			last = e
		}
	}
	return last
}

// runPhases runs the selected phases of wf, resetting the output first.
func runPhases(t *testing.T, wf workflow.Workflow, c *api.Cluster, ex Execution, out *bytes.Buffer, only ...string) error {
	t.Helper()
	out.Reset()
	ex.Selection = workflow.Selection{Only: only}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Execute(ctx, wf, c, ex)
}

// commandsLike are the commands run on h that start with prefix.
func commandsLike(h *sshtest.Fake, prefix string) []string {
	var out []string
	for _, c := range h.Commands() {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// liveCluster is fakeCluster after the certs phase, with a fake API server on the control plane where every
// node is registered, Ready and has a pod CIDR, the leader-election leases held, and containerd answering on
// every host. The hosts answer "restarted" to a service restart, as ensureService's script prints.
func liveCluster(t *testing.T) (*api.Cluster, map[string]*sshtest.Fake, Execution, *bytes.Buffer, *services) {
	t.Helper()
	c, hosts, ex, out := fakeCluster(t)
	if err := runPhases(t, Init(), c, ex, out, "certs"); err != nil {
		t.Fatal(err)
	}
	svc := &services{api: newFakeAPI(t, c, "cp1"), containerd: map[string]*fakeContainerd{}}
	for i, h := range c.Spec.Hosts {
		svc.api.addNode(h, fmt.Sprintf("10.244.%d.0/24", i), true)
		svc.containerd[h.Name] = newFakeContainerd(t)
		hosts[h.Name].OnCommand("if systemctl is-enabled -q ", ssh.Result{Stdout: []byte("restarted\n")}, nil)
	}
	svc.api.holdLease("kube-controller-manager", "cp1_0a1b")
	svc.api.holdLease("kube-scheduler", "cp1_2c3d")
	svc.connectThrough(&ex, c, hosts)
	return c, hosts, ex, out, svc
}

// restarts are the units a host was told to restart, in order.
func restarts(h *sshtest.Fake) []string {
	var units []string
	for _, cmd := range commandsLike(h, "if systemctl is-enabled -q ") {
		units = append(units, strings.Trim(strings.Fields(strings.TrimPrefix(cmd, "if systemctl is-enabled -q "))[0], "'"))
	}
	return units
}
