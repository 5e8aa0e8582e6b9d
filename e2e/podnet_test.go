//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/e2e/lab"
)

// checkPodNetwork proves the pod network across the lab's router: h2 sits on the first subnet, h3 on the routed
// one. Pods on the two reach each other by pod IP and through Services by name (cluster DNS from both sides),
// and their interfaces carry the hosts' MTU less VXLAN's 50 bytes. Then pod-to-pod throughput across the router
// is measured against host-to-host over the same path, with the same program on both.
func checkPodNetwork(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	// the path between the two hosts crosses the router: they share no segment
	r := run(t, l, "exec", "--hosts", "h2", "--", "ip route get "+l.IP(3))
	if r.code != 0 || !strings.Contains(r.stdout, " via ") {
		fatalf(t, "h2 reaches h3 directly, not through the lab's router:\n%s%s", r.stdout, r.stderr)
	}
	pod := func(ns, name, node string, hostNetwork bool, containers string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[2]s, namespace: %[1]s, labels: {app: %[2]s}}
spec:
  nodeName: %[3]s
  hostNetwork: %[4]t
  containers:
%[5]s---
`, ns, name, node, hostNetwork, containers)
	}
	const image = "image: registry.local/privcloud/test:1, imagePullPolicy: Never"
	serveAndSink := "  - {name: serve, " + image + ", command: [/bin/probe, serve]}\n  - {name: sink, " + image + ", command: [/bin/probe, sink, ':5201']}\n"
	// host-network pods run the same program in the hosts' own network namespace (kube-system: Pod Security
	// admits host networking there only)
	hostSink := "  - {name: sink, " + image + ", command: [/bin/probe, sink, ':5202']}\n"
	service := func(name string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + "}\nspec:\n  selector: {app: " + name + "}\n  ports: [{port: 8080}]\n---\n"
	}
	manifests := pod("default", "pn-a", "h2", false, serveAndSink) + pod("default", "pn-b", "h3", false, serveAndSink) +
		pod("kube-system", "hn-a", "h2", true, hostSink) + pod("kube-system", "hn-b", "h3", true, hostSink) + service("pn-a") + service("pn-b")
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"apply -f - <<'EOF'\n"+manifests+"EOF\n"+
		kubectl+"wait --for=condition=Ready pod/pn-a pod/pn-b --timeout=120s && "+
		kubectl+"wait -n kube-system --for=condition=Ready pod/hn-a pod/hn-b --timeout=120s && "+
		kubectl+"get pods pn-a pn-b -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{\"\\n\"}{end}'")
	ips := map[string]string{}
	for _, m := range regexp.MustCompile(`(pn-[ab])=([0-9.]+)`).FindAllStringSubmatch(r.stdout, -1) {
		ips[m[1]] = m[2]
	}
	if r.code != 0 || ips["pn-a"] == "" || ips["pn-b"] == "" {
		fatalf(t, "pods on both subnets: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	defer run(t, l, "exec", "--hosts", "h1", "--", kubectl+"delete pod pn-a pn-b --wait=false; "+kubectl+"delete service pn-a pn-b; "+
		kubectl+"delete pod -n kube-system hn-a hn-b --wait=false")

	// by pod IP and by Service name, each way; cluster DNS answers on both sides
	exec := func(pod, args string) string { return kubectl + "exec " + pod + " -c serve -- /bin/probe " + args }
	r = run(t, l, "exec", "--hosts", "h1", "--", exec("pn-a", "get http://"+ips["pn-b"]+":8080/")+" && "+
		exec("pn-b", "get http://"+ips["pn-a"]+":8080/")+" && "+
		exec("pn-a", "get http://pn-b:8080/")+" && "+
		exec("pn-b", "get http://pn-a.default.svc.cluster.local:8080/")+" && "+
		kubectl+"exec pn-a -c serve -- cat /sys/class/net/eth0/mtu && "+kubectl+"exec pn-b -c serve -- cat /sys/class/net/eth0/mtu")
	if r.code != 0 || strings.Count(r.stdout, "pn-b\n") != 2 || strings.Count(r.stdout, "pn-a\n") != 2 {
		errorf(t, "pods across the router, by IP and by Service: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	hostMTU := run(t, l, "exec", "--hosts", "h2", "--", "cat /sys/class/net/eth0/mtu")
	number := regexp.MustCompile(`(?m)^\s*([0-9]+)\s*$`)
	host := number.FindStringSubmatch(hostMTU.stdout)
	var podMTUs []string
	for _, m := range number.FindAllStringSubmatch(r.stdout, -1) {
		podMTUs = append(podMTUs, m[1])
	}
	if want, err := strconv.Atoi(hostMTUOf(host)); err != nil || !slices.Equal(podMTUs, []string{strconv.Itoa(want - 50), strconv.Itoa(want - 50)}) {
		errorf(t, "pods' MTU %v is not the host's %q less VXLAN's 50 bytes:\n%s", podMTUs, host, r.stdout)
	}

	checkFlannelRestart(t, l, kubectl)

	// throughput across the router, host to host and pod to pod, alternating so both see the same machine
	var hosts, pods []float64
	for range 5 {
		hosts = append(hosts, sendRate(t, l, kubectl+"exec -n kube-system hn-a -- /bin/probe send "+l.IP(3)+":5202 3"))
		pods = append(pods, sendRate(t, l, kubectl+"exec pn-a -c serve -- /bin/probe send "+ips["pn-b"]+":5201 3"))
	}
	slices.Sort(hosts)
	slices.Sort(pods)
	if hosts[2] <= 0 || pods[2] <= 0 {
		errorf(t, "throughput across the router: host-to-host %v, pod-to-pod %v Mbit/s", hosts, pods)
		return
	}
	t.Logf("BENCH pod network across the router (median of 5, 3 s each, one TCP stream): host-to-host %.0f Mbit/s, pod-to-pod %.0f Mbit/s (VXLAN), ratio %.2f; all: %v and %v",
		hosts[2], pods[2], pods[2]/hosts[2], hosts, pods)
}

// checkFlannelRestart restarts flanneld on every node while h2 requests a Service whose pod is on h3, across
// the router: the kernel keeps the overlay's routes and forwarding entries, so no request fails.
func checkFlannelRestart(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get service pn-b -o jsonpath='{.spec.clusterIP}{\"\\n\"}'")
	clusterIP := lastIP(r.stdout)
	if clusterIP == "" {
		errorf(t, "pn-b's ClusterIP: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		return
	}
	worker, err := l.Connect(context.Background(), "h2")
	if err != nil {
		fatal(t, err)
	}
	defer worker.Close()
	svc := serviceProbe(worker, clusterIP, 100*time.Millisecond)
	defer svc.end()
	start := time.Now()
	waitFor(t, "the Service answered 10 times", 30*time.Second, func() bool { n, f := svc.between(start, time.Now()); return n-len(f) >= 10 })
	restart := time.Now()
	r = run(t, l, "exec", "--", "systemctl restart privcloud-flannel && systemctl is-active privcloud-flannel")
	if r.code != 0 {
		errorf(t, "restarting flanneld everywhere: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// flanneld is back when it has written its lease again; then the Service must keep answering a while
	waitFor(t, "flanneld serving again on every node", 60*time.Second, func() bool {
		r := run(t, l, "exec", "--", "curl -fsS http://127.0.0.1:20245/healthz >/dev/null && test -s /run/flannel/subnet.env")
		return r.code == 0
	})
	settled := time.Now()
	waitFor(t, "the Service answered 20 times after the restarts", 30*time.Second, func() bool { n, f := svc.between(settled, time.Now()); return n-len(f) >= 20 })
	total, failed := svc.between(restart, time.Now())
	t.Logf("BENCH flanneld restarted on every node: %d of %d Service requests across the router failed", len(failed), total)
	if len(failed) > 0 {
		errorf(t, "%d of %d Service requests failed while flanneld restarted:%s", len(failed), total, describe(failed, restart))
	}
}

// sendRate runs a probe send on h1's kubectl and returns the Mbit/s it printed (0 when it failed).
func sendRate(t *testing.T, l *lab.Lab, cmd string) float64 {
	r := run(t, l, "exec", "--hosts", "h1", "--", cmd)
	m := regexp.MustCompile(`Mbit/s ([0-9.]+)`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Logf("%s: exit %d\n%s%s", cmd, r.code, r.stdout, r.stderr)
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func hostMTUOf(m []string) string {
	if len(m) < 2 {
		return ""
	}
	return m[1]
}
