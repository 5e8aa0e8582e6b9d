package phases

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

// apiLoadBalancer runs the node-local API load balancer before the kubelet and kube-proxy, which reach the API
// through it.
func apiLoadBalancer() workflow.Phase {
	return workflow.Phase{Name: "api-lb", Short: "Run the node-local API load balancer (loopback, to every API server); wait until it reaches one",
		Roles: nodes, RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
			if !r.Cluster.Spec.APILoadBalancer.On() {
				return workflow.Skip("spec.apiLoadBalancer.enabled is false: nodes reach the API at " + r.Cluster.Spec.ControlPlaneEndpoint)
			}
			return ensureAPILoadBalancer(ctx, r, t, apiBackends(r.Cluster, nil))
		}}
}

// apiBackends are the API servers of the cluster's control planes, leaving out those named in leaving.
func apiBackends(c *api.Cluster, leaving func(name string) bool) []string {
	var out []string
	for _, h := range c.Spec.HostsWithRole(api.RoleControlPlane) {
		if leaving == nil || !leaving(h.Name) {
			out = append(out, net.JoinHostPort(h.InternalAddress, strconv.Itoa(api.DefaultAPIServerPort)))
		}
	}
	return out
}

// ensureAPILoadBalancer writes the load balancer's unit and configuration with backends and makes it run: a
// changed unit restarts it, a changed list of backends alone reloads it, which drops no connection. It
// returns once the balancer reaches an API server that is ready.
func ensureAPILoadBalancer(ctx context.Context, r *workflow.Run, t *workflow.Target, backends []string) error {
	lb := r.Cluster.Spec.APILoadBalancer
	if err := requireAPILBBinary(ctx, r, t); err != nil {
		return err
	}
	d := templates.APILoadBalancer{Name: t.Spec.Name, Listen: lb.Address(), Health: lb.HealthAddress(), Backends: backends}
	unit, socket, config := "/etc/systemd/system/"+pki.APILoadBalancerUnit+".service", "/etc/systemd/system/"+apiLBSocket, "/etc/kubernetes/api-lb.yaml"
	changed, err := hostops.WriteFiles(ctx, t.Host,
		hostops.File{Path: unit, Content: render("privcloud-api-lb.service", d), Mode: 0o600},
		hostops.File{Path: socket, Content: render(apiLBSocket, d), Mode: 0o600},
		hostops.File{Path: config, Content: render("api-lb.yaml", d), Mode: 0o644})
	reportChanges(r, t, changed)
	if err != nil {
		return err
	}
	unitChanged, socketChanged, configChanged := slices.Contains(changed, unit), slices.Contains(changed, socket), slices.Contains(changed, config)
	if err := ensureAPILBSocket(ctx, r, t, socketChanged); err != nil {
		return err
	}
	what, err := hostops.EnsureRunning(ctx, t.Host, pki.APILoadBalancerUnit, unitChanged)
	if what != "" {
		r.Changed(t.Spec.Name, what)
	}
	if err != nil {
		return err
	}
	if configChanged && !unitChanged && what == "" { // running before, with other backends
		if err := reloadAPILoadBalancer(ctx, r, t); err != nil {
			return err
		}
	}
	if !r.Wet(t.Spec.Name, "wait until "+pki.APILoadBalancerUnit+" reaches a ready API server") {
		return nil
	}
	if err := hostops.WaitHealthy(ctx, t.Host, pki.APILoadBalancerUnit, lb.HealthAddress(), "/healthz", "ok", nil, 3*time.Minute); err != nil {
		return err
	}
	// a run stopped between writing the list and the reload left the balancer on its old list: the file does
	// not change again, so the balancer's own view is what is compared
	running, err := apiLBBackends(ctx, t, lb.HealthAddress())
	if err != nil || slices.Equal(running, backends) {
		return err
	}
	if err := reloadAPILoadBalancer(ctx, r, t); err != nil {
		return err
	}
	return wait.Poll(ctx, 30*time.Second, 500*time.Millisecond, func() error {
		running, err := apiLBBackends(ctx, t, lb.HealthAddress())
		if err == nil && !slices.Equal(running, backends) {
			err = fmt.Errorf("%s runs with backends %v after a reload, want %v: see journalctl -u %[1]s", pki.APILoadBalancerUnit, running, backends)
		}
		return err
	})
}

// requireAPILBBinary checks, in one command, that the bundle put the load balancer on the host and that it takes
// its socket from systemd: one built before would find the port taken by privcloud-api-lb.socket and never
// start, taking the node's API access with it, so it is refused before any unit changes.
func requireAPILBBinary(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if r.DryRun { // a plan installed nothing to look for
		return nil
	}
	bin := "/usr/local/bin/" + pki.APILoadBalancerUnit
	// the unit stages the credentials with the binary itself (stage-credentials): an older one would take the
	// word for a flag it lacks and leave the unit failing to start
	res, err := t.Host.Run(ctx, "if ! test -x "+bin+"; then echo missing; elif ! grep -q LISTEN_FDS "+bin+"; then echo no-socket; "+
		"elif ! grep -q stage-credentials "+bin+"; then echo no-staging; fi")
	if err != nil {
		return err
	}
	answer := strings.TrimSpace(string(res.Stdout))
	switch answer {
	case "missing":
		return missingBinary(pki.APILoadBalancerUnit, "set spec.apiLoadBalancer.enabled: false and give controlPlaneEndpoint a load balancer of your own")
	case "no-socket", "no-staging":
		lacks := "take its listening socket from systemd"
		if answer == "no-staging" {
			lacks = "read its credentials again on reload"
		}
		return fmt.Errorf("%s on %s comes from a bundle built by an older privcloud: it cannot %s, "+
			"which this privcloud's unit asks of it; build the bundle again with this privcloud (privcloud bundle build) and run again. Nothing was changed on the host",
			bin, t.Spec.Name, lacks)
	}
	return nil
}

// apiLBSocket is the unit of the load balancer's listening socket.
const apiLBSocket = pki.APILoadBalancerUnit + ".socket"

// ensureAPILBSocket makes systemd hold the load balancer's listening socket. The first time (or when the socket
// unit changed) the service, which may hold the port itself, stops while the socket starts, and starts on it
// just after; from then on its restarts refuse no connection.
func ensureAPILBSocket(ctx context.Context, r *workflow.Run, t *workflow.Target, changed bool) error {
	if r.DryRun { // planned only when the unit changes: a converged host has its socket
		if changed {
			r.Plan(sshAction(t.Spec.Name, "start "+apiLBSocket+", and the service on it"))
		}
		return nil
	}
	restart := "systemctl is-active -q " + apiLBSocket
	if changed {
		restart = "false"
	}
	script := fmt.Sprintf(`set -e
if ! %[3]s; then
  %[4]s
  systemctl stop %[1]s.service
  systemctl restart %[2]s
  echo "%[2]s started"
fi`, pki.APILoadBalancerUnit, apiLBSocket, restart, hostops.LoadUnitScript(apiLBSocket))
	return runScript(ctx, r, t, "start "+apiLBSocket, script)
}

// reloadAPILoadBalancer has the balancer read its backends again (SIGHUP): no connection is dropped.
func reloadAPILoadBalancer(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	u := pki.APILoadBalancerUnit
	return runScript(ctx, r, t, "reload "+u, "systemctl reload "+u+" && echo '"+u+" reloaded'")
}

// apiLBBackends is the list of API servers the host's load balancer runs with, from its /backends.
func apiLBBackends(ctx context.Context, t *workflow.Target, addr string) ([]string, error) {
	p := hostops.NewHealthProbe(t.Host, "http", addr, "/backends", "", nil)
	defer p.Close()
	body, err := p.Get(ctx)
	if err != nil {
		return nil, err
	}
	var st []struct{ Address string }
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return nil, fmt.Errorf("%s /backends: %w", pki.APILoadBalancerUnit, err)
	}
	out := make([]string, 0, len(st))
	for _, s := range st {
		out = append(out, s.Address)
	}
	return out, nil
}

// leaveAPILoadBalancers takes the control planes being reset out of the load balancers of the nodes that stay,
// before their API servers stop: new connections go elsewhere at once, and each API server's graceful
// shutdown moves the clients still on it.
func leaveAPILoadBalancers(ctx context.Context, r *workflow.Run) error {
	if !r.Cluster.Spec.APILoadBalancer.On() {
		return workflow.Skip("spec.apiLoadBalancer.enabled is false")
	}
	if len(r.Scope) == 0 {
		return workflow.Skip("every host is reset")
	}
	backends := apiBackends(r.Cluster, r.InScope)
	switch {
	case len(backends) == len(apiBackends(r.Cluster, nil)):
		return workflow.Skip("no control plane is reset")
	case len(backends) == 0:
		return workflow.Skip("no control plane stays")
	}
	// one node after another, each checked before the next: a change to a running cluster
	for _, t := range r.TargetsFor(nodes) {
		if r.InScope(t.Spec.Name) || t.Host == nil {
			continue
		}
		if err := ensureAPILoadBalancer(ctx, r, t, backends); err != nil {
			return fmt.Errorf("%s: %w", t.Spec.Name, err)
		}
	}
	return nil
}
