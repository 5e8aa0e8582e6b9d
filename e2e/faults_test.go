//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/report"
)

// TestInterruptedRunsConverge interrupts init at the worst moments (privcloud killed during the bundle upload,
// between etcd and the API server, during the add-ons; a host's link cut during the upload), runs the same
// command again each time, and expects a cluster that comes up with nothing left half-done: a further run
// changes nothing and no host holds a temporary file. A rebooted host then comes back Ready by itself.
func TestInterruptedRunsConverge(t *testing.T) {
	l := newLab(t, 2)
	labBundle(t, l.Dir, clusterComponents...)

	// h2's link cut while it receives the bundle: init fails on it; the link comes back; the next run goes on
	start := time.Now()
	code := interruptInit(t, l, "h2 receives the bundle", func(e report.Event) bool {
		return e.Phase == "bundle" && e.Host == "h2" && e.Status == report.Started
	}, time.Second, func(cmd *exec.Cmd) {
		if err := l.Cut(2); err != nil {
			fatal(t, err)
		}
	})
	if err := l.Restore(2); err != nil {
		fatal(t, err)
	}
	if code == 0 {
		fatal(t, "init succeeded with h2's link cut during the bundle upload")
	}
	t.Logf("init with h2 cut off during the bundle upload stopped (exit %d) after %s", code, time.Since(start).Round(100*time.Millisecond))

	for _, point := range []struct {
		name  string
		at    func(report.Event) bool
		delay time.Duration
	}{
		{"during the bundle upload", func(e report.Event) bool { return e.Phase == "bundle" && e.Status == report.Started && e.Host != "" }, 1500 * time.Millisecond},
		{"between etcd and the API server", func(e report.Event) bool { return e.Phase == "control-plane/apiserver" && e.Status == report.Started }, 0},
		{"during the add-ons", func(e report.Event) bool { return strings.HasPrefix(e.Phase, "addons/") && e.Status == report.Started }, 2 * time.Second},
	} {
		start := time.Now()
		interruptInit(t, l, point.name, point.at, point.delay, func(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGKILL) })
		t.Logf("init killed %s after %s", point.name, time.Since(start).Round(100*time.Millisecond))
	}

	start = time.Now()
	if r := run(t, l, "init"); r.code != 0 {
		fatalf(t, "init after the interruptions: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("init after the interruptions: %s", time.Since(start).Round(100*time.Millisecond))
	if r := run(t, l, "init"); r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		fatalf(t, "the run after that changed something:\n%s%s", r.stdout, r.stderr)
	}
	checkNoPartialFiles(t, l)

	// a power cut of the control plane: its services come back with the machine, and its kubelet reports the
	// node Ready again from the new boot (the boot id it reports changes), with the worker Ready too
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	bootID := func() string {
		r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get node h1 -o jsonpath='boot={.status.nodeInfo.bootID} ready={.status.conditions[?(@.type==\"Ready\")].status}'")
		return execLine(r.stdout, "boot=")
	}
	before := bootID()
	start = time.Now()
	if err := l.Reboot(1); err != nil {
		fatal(t, err)
	}
	if err := l.WaitSSH(t.Context(), 2*time.Minute); err != nil {
		fatal(t, err)
	}
	waitUntil(t, 4*time.Minute, "h1 Ready from its new boot", func() (bool, string) {
		now := bootID()
		return now != before && strings.HasSuffix(now, "ready=True"), now
	})
	waitUntil(t, 4*time.Minute, "both nodes Ready after h1's reboot", func() (bool, string) {
		r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"get nodes --no-headers")
		return r.code == 0 && strings.Count(r.stdout, " Ready ") == 2, r.stdout + r.stderr
	})
	t.Logf("h1 rebooted: Ready again from its new boot, with h2, after %s", time.Since(start).Round(100*time.Millisecond))
	waitUntil(t, 4*time.Minute, "CoreDNS available after h1's reboot", func() (bool, string) {
		r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"-n kube-system get deploy coredns -o jsonpath='dns={.status.availableReplicas}/{.spec.replicas}'")
		f := strings.Split(strings.TrimPrefix(execLine(r.stdout, "dns="), "dns="), "/")
		return r.code == 0 && len(f) == 2 && f[0] != "" && f[0] == f[1], r.stdout + r.stderr
	})
	if r := run(t, l, "init"); r.code != 0 || !strings.Contains(r.stdout, "; 0 changed") {
		errorf(t, "init after the reboot changed something:\n%s%s", r.stdout, r.stderr)
	}
}

// interruptInit starts init with its event stream and, once at reports true, waits delay and interrupts it
// with stop; it returns init's exit code. Reaching the end of init without the event fails the test.
func interruptInit(t *testing.T, l *lab.Lab, what string, at func(report.Event) bool, delay time.Duration, stop func(*exec.Cmd)) int {
	t.Helper()
	cmd := exec.Command(privcloud, "init", "-o", "json", "-f", l.ClusterConfig())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatal(t, err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		fatal(t, err)
	}
	done := make(chan error, 1)
	var events strings.Builder
	reached := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		fired := false
		for sc.Scan() {
			events.WriteString(sc.Text() + "\n")
			var e report.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && !fired && at(e) {
				fired = true
				close(reached)
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case <-reached:
		time.Sleep(delay)
		stop(cmd)
	case err := <-done:
		fatalf(t, "init ended (%v) before %s:\n%s%s", err, what, events.String(), stderr.String())
	case <-time.After(10 * time.Minute):
		cmd.Process.Kill()
		fatalf(t, "init did not reach %s in 10 minutes", what)
	}
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		fatalf(t, "init did not stop within 5 minutes of being interrupted %s:\n%s", what, events.String())
	}
	return -1
}

// checkNoPartialFiles looks for privcloud's temporary names on every host: upload temporaries, links being
// switched, hash records being written.
func checkNoPartialFiles(t *testing.T, l *lab.Lab) {
	t.Helper()
	r := run(t, l, "exec", "--", "find / -xdev \\( -name '.privcloud-upload.*' -o -name '*.privcloud' -o -path '/var/lib/privcloud/sums/*.tmp' \\) -print 2>/dev/null; true")
	if r.code != 0 {
		fatalf(t, "look for partial files: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// exec prints each host's output indented under its "HOST | exit N" line
	host := ""
	for _, line := range strings.Split(r.stdout, "\n") {
		if name, _, ok := strings.Cut(line, " | "); ok && !strings.HasPrefix(line, " ") {
			host = name
		} else if strings.HasPrefix(line, "  /") {
			errorf(t, "%s: partial file left: %s", host, strings.TrimSpace(line))
		}
	}
}

// execLine is the line of privcloud exec's output (indented under its host) that starts with prefix.
func execLine(out, prefix string) string {
	for _, line := range strings.Split(out, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// waitUntil polls check until it reports true, failing with its last output after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, out := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			fatalf(t, "no %s within %s; last:\n%s", what, limit, out)
		}
		time.Sleep(2 * time.Second)
	}
}
