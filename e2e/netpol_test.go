//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/e2e/lab"
)

// checkNetworkPolicy proves NetworkPolicy is enforced with real connections: a server in np-srv on h2, clients in
// np-ok and np-other on h3. Deny-all ingress blocks both; an allow rule for np-ok (to the server's label, on its
// named port) lets exactly that client through; an egress deny-all in np-ok blocks it again; removing the
// policies restores traffic.
func checkNetworkPolicy(t *testing.T, l *lab.Lab, kubectl string) {
	t.Helper()
	pod := func(ns, name, node, labels string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec:
  nodeName: %s
  containers:
  - name: probe
    image: registry.local/privcloud/test:1
    imagePullPolicy: Never
    command: [/bin/probe, serve]
    ports: [{name: http, containerPort: 8080}]
---
`, name, ns, labels, node)
	}
	manifests := ""
	for _, ns := range []string{"np-srv", "np-ok", "np-other"} {
		manifests += "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns + "}\n---\n"
	}
	manifests += pod("np-srv", "srv", "h2", "app: srv") + pod("np-ok", "client", "h3", "app: client") + pod("np-other", "client", "h3", "app: client")
	r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"apply -f - <<'EOF'\n"+manifests+"EOF\n"+
		kubectl+"wait --for=condition=Ready pod/srv -n np-srv --timeout=120s && "+
		kubectl+"wait --for=condition=Ready pod/client -n np-ok --timeout=120s && "+
		kubectl+"wait --for=condition=Ready pod/client -n np-other --timeout=120s && "+
		kubectl+"get pod srv -n np-srv -o jsonpath='{.status.podIP}{\"\\n\"}'")
	ip := lastIP(r.stdout)
	if r.code != 0 || ip == "" {
		fatalf(t, "NetworkPolicy test pods: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	url := "http://" + ip + ":8080/"

	// reaches asks both clients at once and says which got through
	reaches := func() (ok, other bool) {
		r := run(t, l, "exec", "--hosts", "h1", "--", fmt.Sprintf(`for ns in np-ok np-other; do
  if %[1]sexec -n $ns client -- /bin/probe get %[2]s >/dev/null 2>&1; then echo "$ns: reached"; else echo "$ns: blocked"; fi
done`, kubectl, url))
		return strings.Contains(r.stdout, "np-ok: reached"), strings.Contains(r.stdout, "np-other: reached")
	}
	expect := func(what string, wantOK, wantOther bool) {
		t.Helper()
		start := time.Now()
		var ok, other bool
		// the firewall follows a policy change within seconds; the deadline is generous
		for deadline := time.Now().Add(90 * time.Second); ; {
			if ok, other = reaches(); ok == wantOK && other == wantOther {
				t.Logf("NetworkPolicy %s: np-ok reached=%v, np-other reached=%v after %s", what, ok, other, time.Since(start).Round(100*time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				fatalf(t, "NetworkPolicy %s: np-ok reached=%v (want %v), np-other reached=%v (want %v)", what, ok, wantOK, other, wantOther)
			}
			time.Sleep(2 * time.Second)
		}
	}
	apply := func(yaml string) {
		t.Helper()
		r := run(t, l, "exec", "--hosts", "h1", "--", kubectl+"apply -f - <<'EOF'\n"+yaml+"EOF")
		if r.code != 0 {
			fatalf(t, "apply: %s%s", r.stdout, r.stderr)
		}
	}

	expect("none", true, true)
	apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: np-srv}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`)
	expect("deny-all ingress", false, false)
	apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-np-ok, namespace: np-srv}
spec:
  podSelector: {matchLabels: {app: srv}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: np-ok}}}]
    ports: [{port: http}]
`)
	expect("allow from namespace np-ok on the named port", true, false)
	apply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: np-ok}
spec:
  podSelector: {}
  policyTypes: [Egress]
`)
	expect("egress denied in np-ok", false, false)
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"delete networkpolicy -n np-srv deny-ingress allow-np-ok && "+kubectl+"delete networkpolicy -n np-ok deny-egress")
	if r.code != 0 {
		fatalf(t, "delete policies: %s%s", r.stdout, r.stderr)
	}
	expect("removed", true, true)
	r = run(t, l, "exec", "--hosts", "h1", "--", kubectl+"delete namespace np-srv np-ok np-other --wait=false")
	if r.code != 0 {
		errorf(t, "clean up: %s%s", r.stdout, r.stderr)
	}
}

// lastIP is the last word of out that is an IP address ("" for none): what a command printed last, before the
// summary privcloud exec adds.
func lastIP(out string) string {
	ip := ""
	for _, f := range strings.Fields(out) {
		if net.ParseIP(f) != nil {
			ip = f
		}
	}
	return ip
}
