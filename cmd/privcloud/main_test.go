//go:build integration

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/privcloud/privcloud/internal/testsshd"
)

// These tests build the real binary and run it as a separate process, as a CI pipeline would.

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "privcloud")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("command did not run: %v", err)
	return -1
}

func TestBinaryExitCodes(t *testing.T) {
	bin := build(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, err := os.ReadFile("../../cluster.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), "podCIDR:", "podCDIR:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		env    []string
		code   int
		output string
	}{
		{[]string{"config", "validate", "-f", "../../cluster.example.yaml"}, nil, 0, "valid: 3 hosts"},
		{[]string{"config", "validate", "-f", bad}, nil, 3, `spec.network.podCDIR (line`},
		{[]string{"config", "validate"}, []string{"PRIVCLOUD_CONFIG=" + bad}, 3, `did you mean "podCIDR"`},
		{[]string{"init", "--from", "nowhere", "-f", "../../cluster.example.yaml"}, nil, 2, `no phase "nowhere"`},
		{[]string{"help", "exit-codes"}, nil, 0, "6  reserved and no longer returned"},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), tc.env...)
		out, err := cmd.CombinedOutput()
		if code := exitCode(t, err); code != tc.code {
			t.Errorf("privcloud %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.code, out)
		}
		if !strings.Contains(string(out), tc.output) {
			t.Errorf("privcloud %s: output lacks %q:\n%s", strings.Join(tc.args, " "), tc.output, out)
		}
	}
}

// lab starts three real sshd hosts on loopback and writes a cluster.yaml for them. With trusted, their keys
// are in the known_hosts file; without, privcloud has never seen them.
func lab(t *testing.T, trusted bool) (config, knownHosts string) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	signer, err := testsshd.NewUserKey(key)
	if err != nil {
		t.Fatal(err)
	}
	knownHosts = filepath.Join(dir, "known_hosts")
	var hosts, known strings.Builder
	for i, role := range []string{"[control-plane, etcd]", "[worker]", "[worker]"} {
		s, err := testsshd.Start(filepath.Join(dir, fmt.Sprintf("h%d", i+1)), testsshd.Options{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		fmt.Fprintf(&hosts, "  - {name: h%d, address: 127.0.0.1, internalAddress: 127.0.0.%d, port: %d, sshKeyPath: %s, roles: %s}\n", i+1, i+1, s.Port, key, role)
		known.WriteString(s.KnownHostsLine(s.HostKey) + "\n")
	}
	if trusted {
		if err := os.WriteFile(knownHosts, []byte(known.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := "apiVersion: privcloud.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  hosts:\n" + hosts.String() +
		"  ssh:\n    knownHostsFiles: [" + knownHosts + "]\n"
	config = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, knownHosts
}

func runBin(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	return exitCode(t, err), string(out)
}

func TestExecAndPreflightOnRealHosts(t *testing.T) {
	bin := build(t)
	config, _ := lab(t, true)

	code, out := runBin(t, bin, "exec", "-f", config, "--", "echo", "hello from $(hostname)")
	if code != 0 || strings.Count(out, "hello from $(hostname)") != 3 || !strings.Contains(out, "3 hosts: 3 ok") {
		t.Errorf("exec: exit %d\n%s", code, out)
	}
	code, out = runBin(t, bin, "exec", "-f", config, "--role", "worker", "-o", "json", "--", "exit 3")
	if code != 5 || strings.Count(out, `"exitCode":3`) != 2 || strings.Contains(out, `"host":"h1"`) {
		t.Errorf("exec on workers with a failing command: exit %d\n%s", code, out)
	}
	cmd := exec.Command(bin, "preflight", "-f", config, "-o", "json")
	stdout, err := cmd.Output()
	code, out = exitCode(t, err), string(stdout)
	var res struct {
		Hosts    []map[string]any `json:"hosts"`
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Hosts) != 3 {
		t.Fatalf("preflight -o json: exit %d, %v\n%s", code, err, out)
	}
	if res.Hosts[0]["kernel"] == "" || res.Hosts[0]["cpus"].(float64) < 1 {
		t.Errorf("facts not gathered: %v", res.Hosts[0])
	}
	// these "hosts" are this machine, which runs no systemd: a real finding, and exit 5
	if hasSystemd() == (code == 5) {
		t.Errorf("preflight exit %d with systemd=%v\n%s", code, hasSystemd(), out)
	}
}

func hasSystemd() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

func TestHostKeysThroughTheCLI(t *testing.T) {
	bin := build(t)
	config, knownHosts := lab(t, false)
	code, out := runBin(t, bin, "exec", "-f", config, "--", "true")
	if code != 4 || !strings.Contains(out, "is not known") || !strings.Contains(out, "SHA256:") {
		t.Fatalf("unknown hosts must be refused with their fingerprints: exit %d\n%s", code, out)
	}
	code, out = runBin(t, bin, "exec", "-f", config, "--accept-new-host-keys", "--", "true")
	if code != 0 {
		t.Fatalf("--accept-new-host-keys: exit %d\n%s", code, out)
	}
	data, _ := os.ReadFile(knownHosts)
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Errorf("known_hosts has %d lines after trusting 3 hosts", n)
	}
	code, out = runBin(t, bin, "exec", "-f", config, "--", "true")
	if code != 0 {
		t.Errorf("recorded keys must be trusted afterwards: exit %d\n%s", code, out)
	}
}

func TestRemoteCertificateCheck(t *testing.T) {
	if _, err := os.Stat("/etc/kubernetes"); err == nil {
		t.Skip("this machine has /etc/kubernetes: the loopback hosts would report its files")
	}
	bin := build(t)
	config, _ := lab(t, true)
	if code, out := runBin(t, bin, "certs", "generate", "-f", config); code != 0 {
		t.Fatalf("certs generate: exit %d\n%s", code, out)
	}
	cmd := exec.Command(bin, "certs", "check-expiration", "--remote", "-f", config, "-o", "json")
	stdout, err := cmd.Output()
	var res struct {
		Certificates []struct{ Host, Path, Name, Problem string }
	}
	if code := exitCode(t, err); code != 5 || json.Unmarshal(stdout, &res) != nil {
		t.Fatalf("check-expiration --remote: exit %d\n%s", code, stdout)
	}
	perHost := map[string]int{}
	for _, c := range res.Certificates {
		if c.Problem != "not deployed" {
			t.Errorf("%s %s: %q", c.Host, c.Path, c.Problem)
		}
		perHost[c.Host]++
	}
	// the control plane with etcd checks 21 files (8 as a node, 10 as control plane, 3 as etcd member), each worker
	// 8 (its CA, its kubelet's serving certificate, kubelet.conf, kube-proxy.conf, the API load balancer's client
	// certificate, the NetworkPolicy firewall's kube-router.conf, the pod network's flannel.conf, Multus's
	// multus.conf)
	if perHost["h1"] != 21 || perHost["h2"] != 8 || perHost["h3"] != 8 {
		t.Errorf("files checked per host: %v", perHost)
	}
}
