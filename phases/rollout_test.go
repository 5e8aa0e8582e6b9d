package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

// turns let size hosts at once, and none after a failure.
func TestRolloutTurns(t *testing.T) {
	ro := rolloutOf(&workflow.Run{})
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := ro.turn(context.Background(), "kubelet", 2)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("%d hosts at once, want 2", most.Load())
	}

	release, err := ro.turn(context.Background(), "kube-apiserver", 1)
	if err != nil {
		t.Fatal(err)
	}
	ro.fail("kube-apiserver", "h1")
	release()
	_, err = ro.turn(context.Background(), "kube-apiserver", 1)
	var stopped *rolloutStopped
	if !errors.As(err, &stopped) || stopped.host != "h1" {
		t.Errorf("a turn after a failed gate: %v", err)
	}
	if _, err := ro.turn(context.Background(), "kube-scheduler", 1); err != nil {
		t.Errorf("another unit's turn is not stopped by it: %v", err)
	}
}

func TestTurnSize(t *testing.T) {
	c := &api.Cluster{}
	for i := range 25 {
		role := api.RoleWorker
		if i < 3 {
			role = api.RoleControlPlane
		}
		c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "h", Roles: []api.Role{role}})
	}
	r := &workflow.Run{Cluster: c}
	kubelet, _ := serviceOf("kubelet")
	apiserver, _ := serviceOf("kube-apiserver")
	if n := turnSize(r, kubelet); n != 2 {
		t.Errorf("kubelets of 25 nodes go %d at a time, want 2", n)
	}
	if n := turnSize(r, apiserver); n != 1 {
		t.Errorf("API servers go %d at a time, want 1", n)
	}
}

// runningHost is a fake host whose units all run; restarts of them are counted.
func runningHost(name string) (*sshtest.Fake, *atomic.Int32) {
	h := sshtest.NewFake(name)
	var restarts atomic.Int32
	h.OnCommandFunc("systemctl show -p NRestarts", func(cmd string) (ssh.Result, error) {
		f := strings.Fields(strings.Split(cmd, "\n")[0])
		unit := f[len(f)-1]
		return ssh.Result{Stdout: []byte("NRestarts=0\nActiveState=active\nSubState=running\nExe=/opt/privcloud/" + unit + "/v1/" + unit + "\n")}, nil
	})
	h.OnCommandFunc("if systemctl is-enabled -q ", func(string) (ssh.Result, error) {
		restarts.Add(1)
		return ssh.Result{Stdout: []byte("restarted\n")}, nil
	})
	h.OnCommand("if systemctl show -p ExecReload", ssh.Result{Stdout: []byte("privcloud-api-lb:reloaded\n")}, nil)
	return h, &restarts
}

// withProbe has the unit's gate use check for the test.
func withProbe(t *testing.T, unit string, check func(context.Context) error) {
	t.Helper()
	saved := slices.Clone(upgradeServices)
	t.Cleanup(func() { upgradeServices = saved })
	for i := range upgradeServices {
		if upgradeServices[i].unit == unit {
			upgradeServices[i].lease = ""
			upgradeServices[i].reconnects = false
			upgradeServices[i].probe = func(*workflow.Run, *workflow.Target, string) (func(context.Context) error, func(), error) {
				return check, func() {}, nil
			}
		}
	}
	gateLimit, gateEvery = 2*time.Second, time.Millisecond
	t.Cleanup(func() { gateLimit, gateEvery = 3*time.Minute, time.Second })
}

// A service owed a restart for a renewed certificate restarts in its turn behind its gate; others restart as
// they are; a failed gate stops the hosts after it.
func TestOwedRestarts(t *testing.T) {
	healthy := true
	withProbe(t, "kube-apiserver", func(context.Context) error {
		if healthy {
			return nil
		}
		return errors.New("not ready")
	})
	var out bytes.Buffer
	r := &workflow.Run{Workflow: "certs renew", Cluster: api.Example(), Reporter: report.New(&out, report.Text)}
	h1, restarts := runningHost("h1")
	ro := rolloutOf(r)
	ro.owe("h1", "kube-apiserver", pki.APILoadBalancerUnit)
	if err := restartOwed(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "h1"}, Host: h1}); err != nil {
		t.Fatal(err)
	}
	if restarts.Load() != 1 || !strings.Contains(out.String(), "kube-apiserver restarted") || !strings.Contains(out.String(), "privcloud-api-lb reloaded") {
		t.Errorf("owed restarts: %d gated restarts\n%s", restarts.Load(), out.String())
	}
	// the load balancer reads its credentials again: a restart would cut every connection of the node to the API
	if !slices.ContainsFunc(h1.Commands(), func(c string) bool {
		return strings.Contains(c, "grep -q -- 'stage-credentials'; then { systemctl try-reload-or-restart privcloud-api-lb.service")
	}) {
		t.Errorf("the load balancer is not reloaded:\n%s", strings.Join(h1.Commands(), "\n"))
	}
	if left := ro.owed("h1"); len(left) != 0 {
		t.Errorf("restarts still owed: %v", left)
	}
	// a reload that fails (its credentials could not be staged) fails the run, naming the unit
	hf, _ := runningHost("hf")
	hf.OnCommand("if systemctl show -p ExecReload", ssh.Result{ExitCode: 1, Stderr: []byte("privcloud-api-lb:\n")}, nil)
	ro.owe("hf", pki.APILoadBalancerUnit)
	err := restartOwed(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "hf"}, Host: hf})
	if err == nil || !strings.Contains(err.Error(), "privcloud-api-lb") {
		t.Errorf("a failed reload: %v", err)
	}
	if cmds := hf.Commands(); len(cmds) == 0 || !strings.HasSuffix(cmds[len(cmds)-1], "exit ${rc:-0}\n") {
		t.Errorf("the script does not end with the failures' exit code: %q", cmds)
	} else if out, err := exec.Command("sh", "-n", "-c", cmds[len(cmds)-1]).CombinedOutput(); err != nil {
		t.Errorf("the script is not valid sh: %v %s", err, out)
	}
	// a new binary of the load balancer needs a restart: a reload would keep the old one running
	hb, _ := runningHost("hb")
	ro.owe("hb", pki.APILoadBalancerUnit)
	ro.oweRestart("hb", pki.APILoadBalancerUnit)
	if err := restartOwed(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "hb"}, Host: hb}); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(hb.Commands(), func(c string) bool {
		return strings.Contains(c, "systemctl try-restart privcloud-api-lb.service") && !strings.Contains(c, "reload")
	}) {
		t.Errorf("the load balancer's new binary is not restarted:\n%s", strings.Join(hb.Commands(), "\n"))
	}

	healthy = false
	h2, _ := runningHost("h2")
	h3, restarts3 := runningHost("h3")
	ro.owe("h2", "kube-apiserver")
	ro.owe("h3", "kube-apiserver")
	err = restartOwed(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "h2"}, Host: h2})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver failed its health gate on h2 after the certificates it reads were renewed") {
		t.Errorf("a gate failing after a renewal: %v", err)
	}
	err = restartOwed(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "h3"}, Host: h3})
	var stopped *rolloutStopped
	if !errors.As(err, &stopped) || restarts3.Load() != 0 {
		t.Errorf("the host after a failed gate: %v, %d restarts", err, restarts3.Load())
	}
}

// A running service whose files change and then keeps exiting gets its previous files back, and passes its
// gate again on the binary it ran before.
func TestChangedFilesSwitchBack(t *testing.T) {
	withProbe(t, "kube-scheduler", func(context.Context) error { return nil })
	var out bytes.Buffer
	r := &workflow.Run{Workflow: "init", Cluster: api.Example(), Reporter: report.New(&out, report.Text)}
	unit, exe := "/etc/systemd/system/kube-scheduler.service", "/opt/privcloud/kube-scheduler/v1/kube-scheduler"
	h := sshtest.NewFake("cp1")
	var mu sync.Mutex
	running, restarts, starts := "old unit\n", 0, 0
	h.OnCommandFunc("systemctl show -p NRestarts", func(string) (ssh.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		runs := exe
		if strings.Contains(running, "broken") { // it exits as soon as it starts, again and again
			restarts++
			runs = ""
		}
		return ssh.Result{Stdout: []byte(fmt.Sprintf("NRestarts=%d\nActiveState=active\nSubState=running\nExe=%s\n", restarts, runs))}, nil
	})
	h.OnCommandFunc("if systemctl is-enabled -q ", func(string) (ssh.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		data, _, _ := h.File(unit)
		running, starts = string(data), starts+1
		return ssh.Result{Stdout: []byte("restarted\n")}, nil
	})
	if _, err := h.Upload(context.Background(), ssh.Bytes([]byte("old unit\n")), unit, 0o600); err != nil {
		t.Fatal(err)
	}
	err := ensureRolled(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "cp1"}, Host: h}, "kube-scheduler",
		hostops.File{Path: unit, Content: []byte("new unit --broken\n"), Mode: 0o600})
	if err == nil || !strings.Contains(err.Error(), "kube-scheduler failed its health gate on cp1 after its configuration changed") ||
		!strings.Contains(err.Error(), "switched back to its previous configuration automatically: it runs and is healthy again") {
		t.Errorf("a changed unit failing its gate: %v", err)
	}
	if data, _, _ := h.File(unit); string(data) != "old unit\n" {
		t.Errorf("the unit after the switch back: %q", data)
	}
	if starts != 2 {
		t.Errorf("%d restarts, want 2 (the change, the switch back)", starts)
	}
}

// A running service whose files are in place is not read again nor restarted: only whether it runs is asked. A
// file whose mode alone differs is a change: it is written and the service restarts in its turn, gated.
func TestRolledServiceInPlaceOrWithAnotherMode(t *testing.T) {
	withProbe(t, "kube-scheduler", func(context.Context) error { return nil })
	var out bytes.Buffer
	r := &workflow.Run{Workflow: "init", Cluster: api.Example(), Reporter: report.New(&out, report.Text)}
	unit := "/etc/systemd/system/kube-scheduler.service"
	h, restarts := runningHost("cp1")
	h.SetFile(unit, []byte("unit\n"), 0o600)
	target := &workflow.Target{Spec: api.Host{Name: "cp1"}, Host: h}
	if err := ensureRolled(context.Background(), r, target, "kube-scheduler", hostops.File{Path: unit, Content: []byte("unit\n"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if restarts.Load() != 0 || strings.Contains(out.String(), "changed") {
		t.Errorf("a converged service: %d restarts\n%s", restarts.Load(), out.String())
	}
	if n := len(commandsLike(h, "systemctl show -p NRestarts")); n != 1 {
		t.Errorf("a converged service asked for its state %d times, want once: %q", n, h.Commands())
	}

	h.SetFile(unit, []byte("unit\n"), 0o644)
	if err := ensureRolled(context.Background(), r, target, "kube-scheduler", hostops.File{Path: unit, Content: []byte("unit\n"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if _, mode, _ := h.File(unit); mode != 0o600 || restarts.Load() != 1 {
		t.Errorf("a unit file of another mode: mode %o after, %d restarts, want 0600 and 1", mode, restarts.Load())
	}
}

// An etcd member restarts with its host's API server stopped around it, and the API server is gated after.
func TestEtcdRestartsWithTheAPIServerDrained(t *testing.T) {
	withProbe(t, "kube-apiserver", func(context.Context) error { return nil })
	var out bytes.Buffer
	r := &workflow.Run{Workflow: "init", Cluster: api.Example(), Reporter: report.New(&out, report.Text)}
	h, _ := runningHost("cp1")
	apiCommands := func() []string {
		var out []string
		for _, c := range h.Commands() {
			if c == "systemctl stop kube-apiserver" || c == "systemctl start kube-apiserver" {
				out = append(out, c)
			}
		}
		return out
	}
	var during []string
	err := withAPIServerDrained(context.Background(), r, &workflow.Target{Spec: api.Host{Name: "cp1"}, Host: h}, func() error {
		during = apiCommands()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(during, []string{"systemctl stop kube-apiserver"}) || !slices.Equal(apiCommands(), []string{"systemctl stop kube-apiserver", "systemctl start kube-apiserver"}) {
		t.Errorf("the API server around the restart: %q during, %q in all", during, apiCommands())
	}
	if !strings.Contains(out.String(), "kube-apiserver stopped while its etcd member restarts") {
		t.Errorf("not reported:\n%s", out.String())
	}
}
