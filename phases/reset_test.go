package phases

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/privcloud/privcloud/phases/workflow"
)

// A data directory reaches reset's script as one quoted word: even a value validation would refuse (the
// cluster here is built in code, past the loader) is neither split nor expanded by the host's shell.
func TestResetFilesQuotesTheDataDirectory(t *testing.T) {
	c, hosts, ex, _ := fakeCluster(t)
	marker := filepath.Join(t.TempDir(), "expanded")
	hostile := "/var/lib/etcd /home $(touch " + marker + ")"
	c.Spec.Etcd.DataDir = hostile
	ex.Selection = workflow.Selection{Only: []string{"files"}}
	if err := Execute(context.Background(), Reset(), c, ex); err != nil {
		t.Fatal(err)
	}
	var script string
	for _, cmd := range hosts["cp1"].Commands() {
		if strings.Contains(cmd, "mountpoint -q") {
			script = cmd
		}
	}
	m := regexp.MustCompile(`(?m)^for p in (.*); do$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no removal loop in reset's script:\n%s", script)
	}
	out, err := exec.Command("sh", "-c", "for p in "+m[1]+"; do printf '%s\\n' \"$p\"; done").Output()
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !contains(words, hostile) || contains(words, "/home") {
		t.Errorf("the data directory did not reach the loop as one word: %q", words)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a command substitution in the data directory ran")
	}
	if !strings.Contains(script, `/|/bin|/boot|/dev|/etc|/home|`) {
		t.Error("reset's script lost its guard against system folders")
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
