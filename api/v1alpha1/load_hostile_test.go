package v1alpha1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// sanityBound is far above what any of these documents needs; it only catches a walk that runs away.
const sanityBound = 5 * time.Second

// laughs is a "billion laughs": nine levels of nine aliases each, 9^9 leaves named in a few hundred bytes,
// each line indented by indent.
func laughs(indent string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%sa0: &a0 [x, x, x, x, x, x, x, x, x]\n", indent)
	for i := 1; i <= 8; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", ")
		fmt.Fprintf(&b, "%sa%d: &a%d [%s]\n", indent, i, i, refs)
	}
	return b.String()
}

// mustFail loads doc, expecting a *ValidationError within sanityBound, and returns its first entry that
// mentions want.
func mustFail(t *testing.T, doc, want string) FieldError {
	t.Helper()
	return errorMentioning(t, loadFailing(t, doc), want)
}

func loadFailing(t *testing.T, doc string) *ValidationError {
	t.Helper()
	start := time.Now()
	_, err := load(t, doc)
	if d := time.Since(start); d > sanityBound {
		t.Errorf("took %s", d)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	return ve
}

func errorMentioning(t *testing.T, ve *ValidationError, want string) FieldError {
	t.Helper()
	for _, fe := range ve.Errors {
		if strings.Contains(fe.Msg, want) {
			return fe
		}
	}
	t.Fatalf("want an error mentioning %q, got %v", want, ve)
	return FieldError{}
}

// mustStop loads doc expecting the node limit, alone, as the error.
func mustStop(t *testing.T, doc string) {
	t.Helper()
	ve := loadFailing(t, doc)
	fe := errorMentioning(t, ve, "too many YAML nodes through aliases")
	if len(ve.Errors) != 1 {
		t.Errorf("%d errors, want the limit alone", len(ve.Errors))
	}
	if !strings.Contains(fe.Msg, fmt.Sprintf("limit of %d nodes", maxWalkNodes)) || fe.Line == 0 {
		t.Errorf("error = %v", fe)
	}
}

func TestYAMLNodeDecodeKeepsAliases(t *testing.T) {
	start := time.Now()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(laughs("")), &n); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > sanityBound {
		t.Errorf("decoding into yaml.Node took %s: it expanded the aliases", d)
	}
	last := n.Content[0].Content[17]
	if last.Content[0].Kind != yaml.AliasNode {
		t.Errorf("aliases were expanded: %v", last.Content[0].Kind)
	}
}

func TestAliasBombUnderUnknownFieldFailsFast(t *testing.T) {
	doc := replace(t, "  name: lab\n", "  name: lab\n  bomb:\n"+laughs("    "))
	fe := mustFail(t, doc, "unknown field")
	if fe.Path != "metadata.bomb" {
		t.Errorf("path = %s", fe.Path)
	}
}

// YAML merges mappings, not lists of lists, so a merge key cannot expand a bomb.
func TestAliasBombThroughMergeKeyIsRefused(t *testing.T) {
	cp1 := "  - name: cp1\n    address: 10.77.0.11\n    roles: [control-plane, etcd]\n"
	for name, doc := range map[string]string{
		"metadata": replace(t, "  name: lab\n", "  name: lab\n  bomb:\n"+laughs("    ")+"  <<: *a8\n"),
		"labels":   replace(t, cp1, cp1+"    labels:\n      bomb:\n"+laughs("        ")+"      <<: *a8\n"),
	} {
		t.Run(name, func(t *testing.T) {
			fe := mustFail(t, doc, "a merge key takes a mapping or a list of mappings, got a list")
			if !strings.HasSuffix(fe.Path, ".<<") || fe.Line == 0 {
				t.Errorf("error = %v", fe)
			}
		})
	}
}

// An alias may name a list that holds it.
func TestMergeKeyCycleIsRefused(t *testing.T) {
	doc := replace(t, "  name: lab\n", "  name: lab\n  <<: &m [*m]\n")
	fe := mustFail(t, doc, "a merge key takes a mapping or a list of mappings, got a list")
	if fe.Path != "metadata.<<" || fe.Line != 5 {
		t.Errorf("error = %v", fe)
	}
}

// One mapping merged a thousand times: each merged key is looked at, even those already set.
func TestMergeKeysMultipliedStop(t *testing.T) {
	var b strings.Builder
	b.WriteString("    labels: &l\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "      k%d: v\n", i)
	}
	b.WriteString("  - name: w2\n    address: 10.77.0.13\n    roles: [worker]\n    labels:\n      <<: [")
	b.WriteString(strings.TrimSuffix(strings.Repeat("*l, ", 1000), ", ") + "]\n")
	mustStop(t, replace(t, "    roles: [worker]\n  - name: w2\n    address: 10.77.0.13\n    roles: [worker]\n",
		"    roles: [worker]\n"+b.String()))
}

// Without merge keys, aliases multiply through the types: many hosts, each an alias of one host with many
// labels.
func TestAliasesMultipliedThroughListsStop(t *testing.T) {
	var b strings.Builder
	b.WriteString("  - &h\n    name: h\n    address: 10.0.0.1\n    roles: [worker]\n    labels:\n")
	for i := 0; i < 800; i++ {
		fmt.Fprintf(&b, "      k%d: v\n", i)
	}
	b.WriteString(strings.Repeat("  - *h\n", 800))
	mustStop(t, replace(t, "  - name: w2\n    address: 10.77.0.13\n    roles: [worker]\n", b.String()))
}

// A cluster of 1000 hosts, with every host field written, stays far below both limits.
func TestThousandHostsFitTheLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: privcloud.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: big\nspec:\n  kubernetesVersion: v1.37.2\n  hosts:\n")
	for i := 0; i < 1000; i++ {
		role := "[worker]"
		if i < 3 {
			role = "[control-plane, etcd]"
		}
		fmt.Fprintf(&b, `  - name: node-%04d.rack-%02d.example.internal
    address: 10.%d.%d.10
    internalAddress: 192.168.%d.%d
    port: 22
    user: admin
    sshKeyPath: ~/.ssh/fleet_ed25519
    roles: %s
    bastions:
    - {address: bastion-%02d.example.internal, port: 2222, user: jump, sshKeyPath: ~/.ssh/jump_ed25519}
    labels:
      topology.kubernetes.io/zone: zone-%d
      topology.kubernetes.io/region: region-a
      node.example.com/rack: rack-%02d
      node.example.com/pool: general
    taints:
    - {key: node.example.com/dedicated, value: batch, effect: NoSchedule}
    - {key: node.example.com/maintenance, effect: PreferNoSchedule}
`, i, i%40, i/250, i%250, i/250, i%250, role, i%40, i%3, i%40)
	}
	b.WriteString("  network:\n    podCIDR: 10.244.0.0/14\n    serviceCIDR: 10.96.0.0/12\n")
	if b.Len() > maxDocumentBytes/4 {
		t.Errorf("1000 hosts take %d bytes, too close to the %d-byte limit", b.Len(), maxDocumentBytes)
	}
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Spec.Hosts) != 1000 {
		t.Errorf("%d hosts", len(c.Spec.Hosts))
	}
}

func TestBrokenSecondDocumentIsRefused(t *testing.T) {
	fe := mustFail(t, base+"---\nextra: [\nmore: :\n", "the second is not valid YAML")
	if fe.Line <= strings.Count(base, "\n") {
		t.Errorf("line %d is not in the second document: %v", fe.Line, fe)
	}
}

func TestSyntaxErrorNamesLine(t *testing.T) {
	fe := mustFail(t, replace(t, "  name: lab\n", "  name: [lab\n"), "not valid YAML")
	if fe.Line == 0 || strings.Contains(fe.Msg, "yaml: line") {
		t.Errorf("error = %v", fe)
	}
}

func TestOversizedFileIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	pad := strings.Repeat("# padding\n", maxDocumentBytes/10+1)
	if err := os.WriteFile(p, []byte(base+pad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != p || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Fatalf("want a size error naming %s, got %v", p, err)
	}
}

func TestFileJustUnderTheLimitIsRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	doc := base + strings.Repeat("#", maxDocumentBytes-len(base))
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != dir || !strings.Contains(err.Error(), "not a regular file but a directory") {
		t.Fatalf("want a not-a-regular-file error naming %s, got %v", dir, err)
	}
}

func TestMissingFileStillWrapsNotExist(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want fs.ErrNotExist, got %v", err)
	}
}
