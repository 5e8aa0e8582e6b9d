package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/report"
)

type result struct {
	code        int
	out, errOut string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Execute(context.Background(), args, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

// example is only loaded and validated: its 10.77.0.x hosts are never dialled by these tests.
const example = "../cluster.example.yaml"

// closedConfig writes a cluster.yaml whose three hosts are loopback ports nothing listens on, so a command that
// connects fails fast as unreachable without any traffic leaving the machine.
func closedConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var hosts strings.Builder
	for i, role := range []string{"[control-plane, etcd]", "[worker]", "[worker]"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		fmt.Fprintf(&hosts, "  - {name: h%d, address: 127.0.0.1, internalAddress: 127.0.0.%d, port: %d, roles: %s}\n", i+1, i+1, port, role)
	}
	doc := "apiVersion: privcloud.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  hosts:\n" + hosts.String() +
		"  ssh:\n    connectTimeout: 5s\n    knownHostsFiles: [" + filepath.Join(dir, "known_hosts") + "]\n"
	p := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleValidates(t *testing.T) {
	r := run(t, "config", "validate", "-f", example)
	if r.code != ExitOK || !strings.Contains(r.out, "valid: 3 hosts (1 control-plane, 1 etcd, 2 worker)") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.errOut)
	}
}

func TestMisspelledFieldNamesFieldAndLine(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "    address: 10.77.0.12", "    adress: 10.77.0.12", 1)
	line := 1 + strings.Count(bad[:strings.Index(bad, "adress")], "\n")
	r := run(t, "config", "validate", "-f", writeConfig(t, bad))
	if r.code != ExitInvalidConfig {
		t.Fatalf("exit %d, want %d", r.code, ExitInvalidConfig)
	}
	want := "spec.hosts[1].adress (line " + strconv.Itoa(line) + "): unknown field; did you mean \"address\"?"
	if !strings.Contains(r.errOut, want) {
		t.Errorf("stderr does not say %q:\n%s", want, r.errOut)
	}
}

func TestValidateJSON(t *testing.T) {
	r := run(t, "config", "validate", "-o", "json", "-f", writeConfig(t, "apiVersion: privcloud.io/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  hosts: []\n"))
	if r.code != ExitInvalidConfig {
		t.Fatalf("exit %d", r.code)
	}
	var res validationResult
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.out)
	}
	if res.Valid || len(res.Errors) == 0 || res.Errors[0].Path != "spec.hosts" || res.Errors[0].Line != 5 {
		t.Errorf("result = %+v", res)
	}
}

func TestExitCodes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	closed := closedConfig(t)
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown flag", []string{"init", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"unknown subcommand", []string{"config", "bogus"}, ExitUsage, `unknown command "bogus" for "privcloud config"`},
		{"bad output format", []string{"version", "-o", "yaml"}, ExitUsage, "unknown output format"},
		{"unknown phase", []string{"init", "-f", example, "--only", "certz"}, ExitUsage, `init has no phase "certz"`},
		{"required phase skipped", []string{"init", "-f", example, "--skip", "connect"}, ExitUsage, "cannot be skipped"},
		{"positional to init", []string{"init", "extra"}, ExitUsage, "takes no arguments"},
		{"missing config", []string{"init", "-f", missing}, ExitInvalidConfig, "does not exist"},
		{"unreachable hosts", []string{"init", "-f", closed}, ExitUnreachable, "connection refused"},
		{"unreachable for exec", []string{"exec", "-f", closed, "--", "true"}, ExitUnreachable, "3 unreachable"},
		{"exec unknown host", []string{"exec", "-f", closed, "--hosts", "nope", "--", "true"}, ExitUsage, `no host named "nope"`},
		{"preflight unreachable", []string{"preflight", "-f", closed}, ExitUnreachable, "cannot connect"},
		{"backup unreachable", []string{"backup", "-f", closed}, ExitUnreachable, "connection refused"},
		{"restore of a missing file", []string{"restore", "-f", example, filepath.Join(t.TempDir(), "none.tar.zst")}, ExitPhaseFailed, "no such file"},
		{"bundle description missing", []string{"bundle", "build", "-f", missing, "-o", "out.tar.zst"}, ExitInvalidConfig, "does not exist"},
		{"exec needs a command", []string{"exec", "-f", example}, ExitUsage, "requires at least 1 arg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", r.code, tc.code, r.errOut)
			}
			if !strings.Contains(r.errOut, tc.stderr) {
				t.Errorf("stderr does not say %q:\n%s", tc.stderr, r.errOut)
			}
		})
	}
}

func TestExitCodesAreDistinct(t *testing.T) {
	seen := map[int]bool{}
	for _, e := range exitCodeHelp {
		if seen[e.code] {
			t.Errorf("exit code %d used twice", e.code)
		}
		seen[e.code] = true
	}
	if len(seen) != 9 {
		t.Errorf("%d exit codes documented, want 9", len(seen))
	}
}

func TestEnvironmentVariables(t *testing.T) {
	t.Setenv("PRIVCLOUD_CONFIG", example)
	t.Setenv("PRIVCLOUD_OUTPUT", "json")
	r := run(t, "config", "validate")
	if r.code != ExitOK || !strings.HasPrefix(r.out, "{") {
		t.Fatalf("PRIVCLOUD_CONFIG and PRIVCLOUD_OUTPUT ignored: exit %d\n%s%s", r.code, r.out, r.errOut)
	}
	// the command line wins over the environment
	r = run(t, "config", "validate", "-o", "text")
	if r.code != ExitOK || strings.HasPrefix(r.out, "{") {
		t.Errorf("flag must override PRIVCLOUD_OUTPUT: %s", r.out)
	}
	t.Setenv("PRIVCLOUD_OUTPUT", "xml")
	r = run(t, "config", "validate")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "xml") {
		t.Errorf("a bad PRIVCLOUD_OUTPUT must be a usage error: exit %d %s", r.code, r.errOut)
	}
	t.Setenv("PRIVCLOUD_OUTPUT", "")
	t.Setenv("PRIVCLOUD_DRY_RUN", "maybe")
	r = run(t, "init")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "PRIVCLOUD_DRY_RUN") {
		t.Errorf("a bad PRIVCLOUD_DRY_RUN must name the variable: exit %d %s", r.code, r.errOut)
	}
}

func TestEnvironmentSelectsPhases(t *testing.T) {
	t.Setenv("PRIVCLOUD_SKIP", "connect")
	r := run(t, "init", "-f", example)
	if r.code != ExitUsage || !strings.Contains(r.errOut, "--skip connect") {
		t.Errorf("PRIVCLOUD_SKIP must reach --skip: exit %d %s", r.code, r.errOut)
	}
}

func TestJSONStream(t *testing.T) {
	r := run(t, "init", "-f", closedConfig(t), "-o", "json")
	if r.code != ExitUnreachable {
		t.Fatalf("exit %d", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	var last report.Event
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("stdout line is not JSON: %q", l)
		}
	}
	if last.Status != report.Failed || last.ExitCode != ExitUnreachable {
		t.Errorf("last event = %+v, want the failure with its exit code", last)
	}
}

func TestPhaseSubcommandsForEveryPath(t *testing.T) {
	root := NewRootCommand(Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	for _, wf := range []struct {
		path []string
		wf   func() []string
	}{
		{[]string{"init", "phase"}, func() []string { return paths(phases.Init().Paths()) }},
		{[]string{"join", "phase"}, func() []string { return paths(phases.Join().Paths()) }},
		{[]string{"reset", "phase"}, func() []string { return paths(phases.Reset().Paths()) }},
		{[]string{"upgrade", "apply", "phase"}, func() []string { return paths(phases.Upgrade(&phases.UpgradeOptions{}).Paths()) }},
	} {
		for _, p := range wf.wf() {
			c, rest, err := root.Find(append(wf.path, p))
			if err != nil || len(rest) != 0 || c.Name() != p {
				t.Errorf("%s %s: no generated subcommand (found %v, %v)", strings.Join(wf.path, " "), p, nameOf(c), err)
			}
		}
	}
}

func TestPhaseSubcommandRunsOnlyThatPhase(t *testing.T) {
	r := run(t, "init", "phase", "addons/quay", "-f", closedConfig(t), "-o", "json")
	// connect is required and runs first; the hosts do not answer, so the run stops there
	if r.code != ExitUnreachable || !strings.Contains(r.out, `"phase":"connect"`) || strings.Contains(r.out, `"phase":"preflight`) {
		t.Errorf("exit %d\n%s", r.code, r.out)
	}
}

func TestPrintDefaultsAndSchema(t *testing.T) {
	r := run(t, "config", "print-defaults")
	if r.code != ExitOK || r.out != api.CommentedYAML(api.Example()) {
		t.Fatalf("print-defaults: exit %d", r.code)
	}
	if _, err := api.LoadBytes([]byte(r.out), "defaults", "/", "/root"); err != nil {
		t.Errorf("print-defaults output is not a valid cluster.yaml: %v", err)
	}
	r = run(t, "config", "schema")
	var s map[string]any
	if r.code != ExitOK || json.Unmarshal([]byte(r.out), &s) != nil || s["$schema"] == nil {
		t.Errorf("schema: exit %d, not a JSON Schema", r.code)
	}
}

func TestVersionJSON(t *testing.T) {
	r := run(t, "version", "-o", "json")
	var v map[string]string
	if r.code != ExitOK || json.Unmarshal([]byte(r.out), &v) != nil || v["version"] == "" || v["apiVersion"] != api.APIVersion {
		t.Errorf("version -o json: exit %d %q", r.code, r.out)
	}
}

func TestCompletion(t *testing.T) {
	r := run(t, "completion", "bash")
	if r.code != ExitOK || !strings.Contains(r.out, "__start_privcloud") {
		t.Errorf("completion bash: exit %d", r.code)
	}
}

func paths(steps []workflow.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Path
	}
	return out
}

func nameOf(c *cobra.Command) string {
	if c == nil {
		return "<nil>"
	}
	return c.CommandPath()
}

// A failure's hint resumes the same run: this cluster.yaml and these --hosts (a reset of one host resumed
// without them would reset every host), and a restore names its backup again.
func TestResumeCommandKeepsTheRunsScope(t *testing.T) {
	g := &globalOptions{configPath: "lab/cluster.yaml", scopeHosts: []string{"h3", "h4"}}
	if got := g.resumeCommand(phases.Reset()); got != "reset -f 'lab/cluster.yaml' --hosts 'h3,h4'" {
		t.Errorf("reset: %q", got)
	}
	wf, cleanup := phases.Restore("/srv/backups/lab 1.tar.zst")
	defer cleanup()
	g = &globalOptions{configPath: "cluster.yaml"}
	if got := g.resumeCommand(wf); got != "restore '/srv/backups/lab 1.tar.zst'" {
		t.Errorf("restore: %q", got)
	}
}
