package v1alpha1

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// withEtcd appends an etcd section to base.
func withEtcd(section string) string {
	return base + "  etcd:\n" + section
}

func TestHostDataDirsThatWouldHarmAHostAreRefused(t *testing.T) {
	for _, dir := range []string{"/", "/var/lib/etcd /home", "/var/lib/$(reboot)", "/var/lib/`id`", "/var/lib/etcd;rm", "/usr",
		"/var/lib", "/etc", "/var/lib/etcd/", "/var/lib/../etc", "//var/lib/etcd", "var/lib/etcd", "/var/lib/etcd\nExecStartPre=/bin/sh",
		"/var/lib/'etcd'", "/home"} {
		_, err := load(t, withEtcd("    dataDir: "+quoteYAML(dir)+"\n"))
		if err == nil || !strings.Contains(err.Error(), "spec.etcd.dataDir") {
			t.Errorf("dataDir %q: want an error naming spec.etcd.dataDir, got %v", dir, err)
		}
	}
	for _, dir := range []string{"/var/lib/etcd", "/data", "/srv/etcd-data", "/mnt/disk1/etcd"} {
		if _, err := load(t, withEtcd("    dataDir: "+dir+"\n")); err != nil {
			t.Errorf("dataDir %q: %v", dir, err)
		}
	}
	_, err := load(t, base+"  addons:\n    quay:\n      hostPathDir: /\n")
	if err == nil || !strings.Contains(err.Error(), "spec.addons.quay.hostPathDir") {
		t.Errorf("quay hostPathDir /: want an error naming it, got %v", err)
	}
}

func TestEtcdExtraArgsCannotInjectOrOverride(t *testing.T) {
	for _, tc := range []struct{ args, field string }{
		{`"quota-backend-bytes": "1\nExecStartPre=/bin/rm -rf /"`, "quota-backend-bytes"},
		{`"log-level": "info --data-dir=/"`, "log-level"},
		{`"log-level": "$(id)"`, "log-level"},
		{`"log-level": "%h"`, "log-level"},
		{`"data-dir": "/tmp/x"`, "data-dir"},
		{`"cert-file": "/tmp/x.crt"`, "cert-file"},
		{`"bad name": "x"`, "bad name"},
		{`"--log-level": "info"`, "--log-level"},
	} {
		_, err := load(t, withEtcd("    extraArgs:\n      "+tc.args+"\n"))
		if err == nil || !strings.Contains(err.Error(), "spec.etcd.extraArgs."+tc.field) {
			t.Errorf("extraArgs %s: want an error naming spec.etcd.extraArgs.%s, got %v", tc.args, tc.field, err)
		}
	}
	if _, err := load(t, withEtcd("    extraArgs:\n      quota-backend-bytes: \"8589934592\"\n      log-level: warn\n      cipher-suites: TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384\n")); err != nil {
		t.Errorf("ordinary extraArgs refused: %v", err)
	}
}

func TestFlagsThatSwitchAProtectionOffNeedToBeAccepted(t *testing.T) {
	for _, arg := range []string{`client-cert-auth: "false"`, `peer-client-cert-auth: "0"`, `auto-tls: "true"`, `enable-pprof: "true"`,
		`unsafe-no-fsync: "true"`, `tls-min-version: TLS1.1`} {
		_, err := load(t, withEtcd("    extraArgs:\n      "+arg+"\n"))
		var ve *ValidationError
		if err == nil || !asValidation(err, &ve) || !slices.ContainsFunc(ve.Errors, func(fe FieldError) bool {
			return strings.Contains(fe.Msg, "acceptInsecureExtraArgs")
		}) {
			t.Errorf("%s: want a refusal naming acceptInsecureExtraArgs, got %v", arg, err)
		}
		if _, err := load(t, withEtcd("    acceptInsecureExtraArgs: true\n    extraArgs:\n      "+arg+"\n")); err != nil {
			t.Errorf("%s accepted explicitly: %v", arg, err)
		}
	}
	if _, err := load(t, withEtcd("    extraArgs:\n      client-cert-auth: \"true\"\n")); err != nil {
		t.Errorf("client-cert-auth=true is no risk: %v", err)
	}
}

func quoteYAML(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func asValidation(err error, ve **ValidationError) bool {
	v, ok := err.(*ValidationError)
	*ve = v
	return ok
}

func TestOneMachineOnTwoPortsIsRefused(t *testing.T) {
	doc := replace(t, "  - name: w2\n    address: 10.77.0.13\n", "  - name: w2\n    address: 10.77.0.12\n    port: 2222\n")
	_, err := load(t, doc)
	if err == nil || !strings.Contains(err.Error(), "spec.hosts[2].internalAddress") {
		t.Fatalf("two hosts on 10.77.0.12 (ports 22 and 2222): want an error naming spec.hosts[2], got %v", err)
	}
	nat := replace(t, "  - name: w2\n    address: 10.77.0.13\n", "  - name: w2\n    address: 10.77.0.12\n    port: 2222\n    internalAddress: 10.77.0.13\n")
	if _, err := load(t, nat); err != nil {
		t.Errorf("two hosts behind one NAT address with their own internal addresses: %v", err)
	}
}

func TestComponentExtraArgs(t *testing.T) {
	section := func(component, body string) string { return base + "  " + component + ":\n" + body }
	for _, tc := range []struct{ component, args, field, want string }{
		{"apiServer", `"tls-cert-file": "/tmp/x.crt"`, "spec.apiServer.extraArgs.tls-cert-file", "set by privcloud"},
		{"apiServer", `"etcd-servers": "http://evil:2379"`, "spec.apiServer.extraArgs.etcd-servers", "set by privcloud"},
		{"apiServer", `"anonymous-auth": "true"`, "spec.apiServer.extraArgs.anonymous-auth", "spec.apiServer.acceptInsecureExtraArgs"},
		{"apiServer", `"authorization-mode": "Node,RBAC,AlwaysAllow"`, "spec.apiServer.extraArgs.authorization-mode", "acceptInsecureExtraArgs"},
		{"apiServer", `"v": "2 --anonymous-auth=true"`, "spec.apiServer.extraArgs.v", "may hold only"},
		{"controllerManager", `"cluster-signing-cert-file": "/tmp/ca.crt"`, "spec.controllerManager.extraArgs.cluster-signing-cert-file", "set by privcloud"},
		{"controllerManager", `"bind-address": "0.0.0.0"`, "spec.controllerManager.extraArgs.bind-address", "acceptInsecureExtraArgs"},
		{"scheduler", `"profiling": "true"`, "spec.scheduler.extraArgs.profiling", "spec.scheduler.acceptInsecureExtraArgs"},
		{"kubelet", `"node-ip": "10.0.0.9"`, "spec.kubelet.extraArgs.node-ip", "set by privcloud"},
		{"kubelet", `"read-only-port": "10255"`, "spec.kubelet.extraArgs.read-only-port", "acceptInsecureExtraArgs"},
	} {
		_, err := load(t, section(tc.component, "    extraArgs:\n      "+tc.args+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s extraArgs %s: want an error naming %s and saying %q, got %v", tc.component, tc.args, tc.field, tc.want, err)
		}
	}
	for _, ok := range []string{
		section("apiServer", "    extraArgs:\n      max-requests-inflight: \"800\"\n      v: \"2\"\n"),
		section("apiServer", "    acceptInsecureExtraArgs: true\n    extraArgs:\n      profiling: \"true\"\n"),
		section("controllerManager", "    extraArgs:\n      node-monitor-grace-period: 40s\n"),
		section("scheduler", "    extraArgs:\n      v: \"3\"\n"),
		section("kubelet", "    extraArgs:\n      max-open-files: \"1000000\"\n"),
	} {
		if _, err := load(t, ok); err != nil {
			t.Errorf("ordinary extraArgs refused: %v\n%s", err, ok)
		}
	}
}

// TestManagedFlagsFollowTheUnits: every flag a unit template sets is either refused as an extra flag or
// checked as one that could weaken it.
func TestManagedFlagsFollowTheUnits(t *testing.T) {
	flag := regexp.MustCompile(`--([a-z0-9.-]+)=`)
	for file, lists := range map[string][]any{
		"kube-apiserver.service":          {apiServerManagedFlags, apiServerInsecureFlags},
		"kube-controller-manager.service": {controllerManagerManagedFlags, leaderElectedInsecureFlags},
		"kube-scheduler.service":          {schedulerManagedFlags, leaderElectedInsecureFlags},
		"kubelet.service":                 {kubeletManagedFlags, kubeletInsecureFlags},
		"etcd.service":                    {etcdManagedFlags, etcdInsecureFlags},
	} {
		data, err := os.ReadFile(filepath.Join("..", "..", "templates", "files", file))
		if err != nil {
			t.Fatal(err)
		}
		managed, insecure := lists[0].(map[string]string), lists[1].(map[string]insecureFlag)
		for _, m := range flag.FindAllStringSubmatch(string(data), -1) {
			if _, ok := managed[m[1]]; !ok && insecure[m[1]].insecure == nil {
				t.Errorf("%s sets --%s, which an extra flag could override unchecked", file, m[1])
			}
		}
	}
}
