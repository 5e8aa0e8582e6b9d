//go:build e2e

package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/status"
)

// checkStatus: on a healthy cluster privcloud status exits 0 and lists every host and every component; with a
// worker's kubelet stopped it names that host and component and exits 8, and 0 again once it is back.
// whileStopped runs while the kubelet is stopped.
func checkStatus(t *testing.T, l *lab.Lab, whileStopped func(), hosts ...string) {
	t.Helper()
	start := time.Now()
	r := run(t, l, "status")
	t.Logf("BENCH status of %d hosts: %s", len(hosts), time.Since(start).Round(10*time.Millisecond))
	if r.code != 0 || !strings.Contains(r.stdout, "cluster lab: healthy") {
		errorf(t, "status of a healthy cluster: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, h := range hosts {
		if !regexp.MustCompile(`(?m)^` + h + ` .* yes `).MatchString(r.stdout) {
			errorf(t, "status does not list %s as reachable:\n%s", h, r.stdout)
		}
	}
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy", "privcloud-api-lb", "kube-router", "flanneld", "privcloud-metrics"} {
		if !regexp.MustCompile(`(?m)^` + c + ` +v[0-9]`).MatchString(r.stdout) {
			errorf(t, "status does not list %s with its version:\n%s", c, r.stdout)
		}
	}
	r = run(t, l, "status", "-o", "json")
	var rep status.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || !rep.Healthy || len(rep.Hosts) != len(hosts) || len(rep.Etcd) == 0 || len(rep.Nodes) != len(hosts) {
		errorf(t, "status -o json: %v\n%s", err, r.stdout)
	}

	r = run(t, l, "exec", "--hosts", "h2", "--", "systemctl stop kubelet")
	if r.code != 0 {
		fatalf(t, "stop h2's kubelet: %s%s", r.stdout, r.stderr)
	}
	r = run(t, l, "status")
	if r.code != 8 || !strings.Contains(r.stdout, "cluster lab: DEGRADED") ||
		!regexp.MustCompile(`ERROR +h2 +kubelet +kubelet is inactive`).MatchString(r.stdout) {
		errorf(t, "status with h2's kubelet stopped: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	whileStopped()
	r = run(t, l, "exec", "--hosts", "h2", "--", "systemctl start kubelet")
	if r.code != 0 {
		fatalf(t, "start h2's kubelet: %s%s", r.stdout, r.stderr)
	}
	waitFor(t, "status healthy again", 2*time.Minute, func() bool { return run(t, l, "status").code == 0 })
}

// checkStatusWithAHostGone: with a host down, status says so and still reports the rest, through another
// control plane's API server.
func checkStatusWithAHostGone(t *testing.T, l *lab.Lab, gone string) {
	t.Helper()
	start := time.Now()
	r := run(t, l, "status", "-o", "json")
	t.Logf("status with %s gone: exit %d in %s", gone, r.code, time.Since(start).Round(10*time.Millisecond))
	var rep status.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 8 {
		fatalf(t, "status with %s gone: exit %d, %v\n%s%s", gone, r.code, err, r.stdout, r.stderr)
	}
	named, reachable := false, 0
	for _, p := range rep.Problems {
		named = named || (p.Host == gone && p.Component == "host" && strings.Contains(p.Message, "unreachable"))
	}
	for _, h := range rep.Hosts {
		if h.Reachable {
			reachable++
		}
	}
	if !named || reachable != len(rep.Hosts)-1 || len(rep.Nodes) == 0 || len(rep.Etcd) == 0 {
		errorf(t, "status with %s gone must name it and report the other hosts, the nodes and etcd:\n%s", gone, r.stdout)
	}
}
