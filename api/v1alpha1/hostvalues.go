package v1alpha1

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Values of cluster.yaml that end up on hosts (in commands, unit files, scripts run as root) are held to
// rules strict enough that no quoting mistake anywhere downstream can turn them into something else: paths
// are clean, absolute and free of whitespace and shell characters, and never a folder the system itself lives
// in (reset removes data directories).

// hostPathRE is the character set of a path privcloud writes to or removes on a host.
var hostPathRE = regexp.MustCompile(`^[A-Za-z0-9._/+@-]+$`)

// systemDirs are folders a data directory must never be: reset would empty them.
var systemDirs = []string{"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
	"/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib",
	"/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/lib", "/usr/local/sbin", "/usr/sbin",
	"/usr/share", "/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log",
	"/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp", "/etc/kubernetes", "/etc/systemd", "/opt/privcloud",
	"/var/lib/privcloud", "/var/lib/kubelet", "/var/lib/containerd", "/run/containerd"}

// hostDataDir checks a data directory on hosts: privcloud creates it, and reset removes it.
func (v *validator) hostDataDir(field, p string) {
	switch {
	case p == "":
		v.add(field, "must not be empty")
	case !strings.HasPrefix(p, "/"):
		v.add(field, "%q must be an absolute path", p)
	case !hostPathRE.MatchString(p):
		v.add(field, "%q may hold only letters, digits and . _ / + @ - (no spaces or shell characters)", p)
	case path.Clean(p) != p:
		v.add(field, "%q is not a clean path: write %s", p, path.Clean(p))
	case contains(systemDirs, p):
		v.add(field, "%s is a system folder: privcloud removes its data directories on reset, so it must be a folder of its own (e.g. %s)", p, DefaultEtcdDataDir)
	}
}

// flagNameRE is a command-line flag name as Kubernetes components and etcd spell them.
var flagNameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)*$`)

// flagValueRE is what an extra flag value may hold: enough for URLs, lists, durations and key=value pairs,
// nothing a systemd unit or a shell would interpret (whitespace, quotes, $, %, backslash, newlines).
var flagValueRE = regexp.MustCompile(`^[A-Za-z0-9._:/,=@+*-]*$`)

// etcdManagedFlags are set by privcloud from cluster.yaml and the PKI: an extra flag would override them.
var etcdManagedFlags = map[string]string{
	"name": "the host's name", "data-dir": "spec.etcd.dataDir", "listen-client-urls": "the host's addresses",
	"advertise-client-urls": "the host's addresses", "listen-peer-urls": "the host's addresses",
	"initial-advertise-peer-urls": "the host's addresses", "listen-metrics-urls": "privcloud",
	"initial-cluster": "privcloud's membership handling", "initial-cluster-state": "privcloud's membership handling",
	"initial-cluster-token": "privcloud's membership handling", "trusted-ca-file": "the cluster PKI",
	"cert-file": "the cluster PKI", "key-file": "the cluster PKI", "peer-trusted-ca-file": "the cluster PKI",
	"peer-cert-file": "the cluster PKI", "peer-key-file": "the cluster PKI",
}

// insecureFlag describes an extra flag value that switches a protection off.
type insecureFlag struct {
	insecure func(value string) bool
	risk     string
}

func boolIs(want bool) func(string) bool {
	return func(v string) bool {
		b, err := strconv.ParseBool(v)
		if v == "" {
			b, err = true, nil // --flag= alone is not how a bool is switched, but etcd reads it as true
		}
		return err == nil && b == want
	}
}

// tlsBelow12 is a --tls-min-version below TLS 1.2, as Kubernetes components and etcd spell versions.
func tlsBelow12(v string) bool {
	return v == "VersionTLS10" || v == "VersionTLS11" || v == "TLS1.0" || v == "TLS1.1"
}

func notLoopback(v string) bool { return v != "127.0.0.1" && v != "::1" && v != "localhost" }

// What the Kubernetes components' units set (a test keeps these in step with the templates), and the extra
// flags that would weaken them.
var (
	apiServerManagedFlags = managedBy("the cluster PKI, cluster.yaml and privcloud's hardening",
		"admission-control-config-file", "advertise-address", "allow-privileged", "audit-log-maxage", "audit-log-maxbackup",
		"audit-log-maxsize", "audit-log-path", "audit-policy-file", "client-ca-file", "enable-admission-plugins",
		"encryption-provider-config", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-servers", "kubelet-certificate-authority",
		"kubelet-client-certificate", "kubelet-client-key", "kubelet-preferred-address-types", "proxy-client-cert-file",
		"proxy-client-key-file", "requestheader-allowed-names", "requestheader-client-ca-file", "requestheader-extra-headers-prefix",
		"requestheader-group-headers", "requestheader-username-headers", "secure-port", "service-account-extend-token-expiration",
		"service-account-issuer", "service-account-key-file", "service-account-signing-key-file", "service-cluster-ip-range",
		"shutdown-delay-duration", "shutdown-watch-termination-grace-period", "tls-cert-file", "tls-private-key-file")
	controllerManagerManagedFlags = managedBy("the cluster PKI, cluster.yaml and privcloud's hardening",
		"allocate-node-cidrs", "authentication-kubeconfig", "authorization-kubeconfig", "client-ca-file", "cluster-cidr",
		"cluster-name", "cluster-signing-cert-file", "cluster-signing-key-file", "controllers", "kubeconfig", "leader-elect",
		"node-cidr-mask-size", "requestheader-client-ca-file", "root-ca-file", "service-account-private-key-file",
		"service-cluster-ip-range", "use-service-account-credentials")
	schedulerManagedFlags = managedBy("the cluster PKI and privcloud", "authentication-kubeconfig", "authorization-kubeconfig",
		"kubeconfig", "leader-elect")
	kubeletManagedFlags = managedBy("the node's entry in cluster.yaml and the cluster PKI", "config", "kubeconfig",
		"hostname-override", "node-ip", "node-labels", "register-with-taints", "bootstrap-kubeconfig")

	apiServerInsecureFlags = map[string]insecureFlag{
		"anonymous-auth":     {boolIs(true), "any client could call the API without credentials"},
		"authorization-mode": {func(v string) bool { return strings.Contains(v, "AlwaysAllow") }, "every authenticated client could do anything"},
		"profiling":          {boolIs(true), "the profiling endpoints would be served"},
		"tls-min-version":    {tlsBelow12, "TLS versions with known weaknesses would be accepted"},
		"tls-cipher-suites": {func(v string) bool {
			return strings.Contains(v, "_CBC_") || strings.Contains(v, "RC4") || strings.Contains(v, "3DES")
		}, "weak cipher suites would be accepted"},
	}
	leaderElectedInsecureFlags = map[string]insecureFlag{
		"profiling":       {boolIs(true), "the profiling endpoints would be served"},
		"bind-address":    {notLoopback, "its health and metrics endpoints would be reachable from the network"},
		"tls-min-version": {tlsBelow12, "TLS versions with known weaknesses would be accepted"},
	}
	kubeletInsecureFlags = map[string]insecureFlag{
		"anonymous-auth":            {boolIs(true), "any client could call the kubelet's API without credentials"},
		"authorization-mode":        {func(v string) bool { return v == "AlwaysAllow" }, "every authenticated client could exec into any pod on the node"},
		"read-only-port":            {func(v string) bool { return v != "0" }, "pods' specs and metrics would be served without authentication"},
		"protect-kernel-defaults":   {boolIs(false), "the kubelet would change kernel settings the hardening relies on"},
		"enable-debugging-handlers": {boolIs(true), "the debugging handlers would be served"},
		"tls-min-version":           {tlsBelow12, "TLS versions with known weaknesses would be accepted"},
		"rotate-certificates":       {boolIs(false), "the kubelet's client certificate would no longer renew itself"},
	}
)

func managedBy(owner string, flags ...string) map[string]string {
	m := map[string]string{}
	for _, f := range flags {
		m[f] = owner
	}
	return m
}

// etcdInsecureFlags are etcd flags that weaken the cluster's security or its data's safety.
var etcdInsecureFlags = map[string]insecureFlag{
	"client-cert-auth":      {boolIs(false), "clients would reach etcd, and every Secret, without a certificate"},
	"peer-client-cert-auth": {boolIs(false), "any machine could join etcd as a peer"},
	"auto-tls":              {boolIs(true), "clients would be served a self-signed certificate nobody verifies"},
	"peer-auto-tls":         {boolIs(true), "peers would use self-signed certificates nobody verifies"},
	"enable-pprof":          {boolIs(true), "the profiling endpoints would be served to every client"},
	"tls-min-version":       {func(v string) bool { return v == "TLS1.0" || v == "TLS1.1" }, "TLS versions with known weaknesses would be accepted"},
}

// extraArgs checks a component's extra flags: names and values that cannot break out of the unit file, no flag
// privcloud manages, and no flag that switches a protection off unless acceptInsecureExtraArgs says so.
func (v *validator) extraArgs(field string, args map[string]string, accept bool, managed map[string]string, insecure map[string]insecureFlag, unsafe func(string) bool) {
	for _, k := range sortedKeys(args) {
		field, value := field+".extraArgs."+k, args[k]
		if strings.HasPrefix(k, "-") {
			v.add(field, "write flag names without leading dashes")
			continue
		}
		if !flagNameRE.MatchString(k) {
			v.add(field, "%q is not a flag name (lowercase letters, digits, '-' and '.')", k)
			continue
		}
		if !flagValueRE.MatchString(value) {
			v.add(field, "%q may hold only letters, digits and . _ : / , = @ + * - (no spaces, quotes, $, %%, backslashes or newlines)", value)
			continue
		}
		if owner, ok := managed[k]; ok {
			v.add(field, "--%s is set by privcloud from %s and cannot be overridden", k, owner)
			continue
		}
		risky, why := insecure[k].insecure != nil && insecure[k].insecure(value), insecure[k].risk
		if unsafe != nil && unsafe(k) {
			risky, why = true, "the component calls it unsafe"
		}
		if risky && !accept {
			v.add(field, "--%s=%s switches a protection off (%s); set %s.acceptInsecureExtraArgs: true to run it anyway", k, value, why, strings.TrimSuffix(field, ".extraArgs."+k))
		}
	}
}

// etcdExtraArgs checks spec.etcd.extraArgs.
func (v *validator) etcdExtraArgs(e *Etcd) {
	v.extraArgs("spec.etcd", e.ExtraArgs, e.AcceptInsecureExtraArgs, etcdManagedFlags, etcdInsecureFlags, func(k string) bool {
		return strings.HasPrefix(k, "unsafe-") || strings.HasPrefix(k, "experimental-unsafe-")
	})
}

// componentExtraArgs checks the extra flags of the Kubernetes components.
func (v *validator) componentExtraArgs(s *ClusterSpec) {
	v.extraArgs("spec.apiServer", s.APIServer.ExtraArgs, s.APIServer.AcceptInsecureExtraArgs, apiServerManagedFlags, apiServerInsecureFlags, nil)
	v.extraArgs("spec.controllerManager", s.ControllerManager.ExtraArgs, s.ControllerManager.AcceptInsecureExtraArgs, controllerManagerManagedFlags, leaderElectedInsecureFlags, nil)
	v.extraArgs("spec.scheduler", s.Scheduler.ExtraArgs, s.Scheduler.AcceptInsecureExtraArgs, schedulerManagedFlags, leaderElectedInsecureFlags, nil)
	v.extraArgs("spec.kubelet", s.Kubelet.ExtraArgs, s.Kubelet.AcceptInsecureExtraArgs, kubeletManagedFlags, kubeletInsecureFlags, nil)
}

var podSecurityLevels = []string{"privileged", "baseline", "restricted"}

func (v *validator) apiServer(a *APIServer) {
	for _, n := range []struct {
		field string
		value int
	}{{"maxAge", a.Audit.MaxAge}, {"maxBackup", a.Audit.MaxBackup}, {"maxSize", a.Audit.MaxSize}} {
		if n.value < 1 {
			v.add("spec.apiServer.audit."+n.field, "must be at least 1, got %d", n.value)
		}
	}
	for _, l := range []struct{ field, value string }{{"enforce", a.PodSecurity.Enforce}, {"audit", a.PodSecurity.Audit}, {"warn", a.PodSecurity.Warn}} {
		if !contains(podSecurityLevels, l.value) {
			v.add("spec.apiServer.podSecurity."+l.field, "%q is not privileged, baseline or restricted", l.value)
		}
	}
	for i, ns := range a.PodSecurity.ExemptNamespaces {
		if !isDNSLabel(ns) {
			v.add(fmt.Sprintf("spec.apiServer.podSecurity.exemptNamespaces[%d]", i), "%q is not a namespace name", ns)
		}
	}
}
