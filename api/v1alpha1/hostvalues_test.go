package v1alpha1

import (
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
