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

// etcdInsecureFlags are etcd flags that weaken the cluster's security or its data's safety.
var etcdInsecureFlags = map[string]insecureFlag{
	"client-cert-auth":      {boolIs(false), "clients would reach etcd, and every Secret, without a certificate"},
	"peer-client-cert-auth": {boolIs(false), "any machine could join etcd as a peer"},
	"auto-tls":              {boolIs(true), "clients would be served a self-signed certificate nobody verifies"},
	"peer-auto-tls":         {boolIs(true), "peers would use self-signed certificates nobody verifies"},
	"enable-pprof":          {boolIs(true), "the profiling endpoints would be served to every client"},
	"tls-min-version":       {func(v string) bool { return v == "TLS1.0" || v == "TLS1.1" }, "TLS versions with known weaknesses would be accepted"},
}

// etcdExtraArgs checks spec.etcd.extraArgs: names and values that cannot break out of the unit file, no
// flag privcloud manages, and no flag that switches a protection off unless acceptInsecureExtraArgs says so.
func (v *validator) etcdExtraArgs(e *Etcd) {
	for _, k := range sortedKeys(e.ExtraArgs) {
		field, value := "spec.etcd.extraArgs."+k, e.ExtraArgs[k]
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
		if owner, ok := etcdManagedFlags[k]; ok {
			v.add(field, "--%s is set by privcloud from %s and cannot be overridden", k, owner)
			continue
		}
		risky, why := etcdInsecureFlags[k].insecure != nil && etcdInsecureFlags[k].insecure(value), etcdInsecureFlags[k].risk
		if strings.HasPrefix(k, "unsafe-") || strings.HasPrefix(k, "experimental-unsafe-") {
			risky, why = true, "etcd calls it unsafe: a crash can lose or corrupt data"
		}
		if risky && !e.AcceptInsecureExtraArgs {
			v.add(field, "--%s=%s switches a protection off (%s); set spec.etcd.acceptInsecureExtraArgs: true to run it anyway", k, value, why)
		}
	}
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
