package phases

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privcloud/privcloud/internal/golden"
	"github.com/privcloud/privcloud/report"
	"github.com/privcloud/privcloud/ssh"
)

// factsOf is what preflight's gather script prints on a healthy host.
func factsOf(name string, i int) func(string) (ssh.Result, error) {
	return func(string) (ssh.Result, error) {
		return ssh.Result{Stdout: []byte(fmt.Sprintf("os=debian 13\nkernel=6.12.48\narch=x86_64\nhostname=%s\nmachineid=%032x\ncpus=2\n"+
			"memkb=4014080\nswapkb=0\nswaps=0\ndiskkb=52428800\ncgroupfs=cgroup2fs\nsystemd=yes\nipset=yes\nvxlan=yes\nsubnets=192.168.10.%d/24\ntime=%d\n", name, i+1, 11+i, time.Now().UnixNano()))}, nil
	}
}

var (
	// durations vary from run to run: "<1ms", "7ms", "1.25s", "1m2.5s"
	eventDuration = regexp.MustCompile(`^(\S+ +\S+ +\S+ +)(<1ms|[0-9][0-9.]*m?s|[0-9]+m[0-9.]+s)\b`)
	doneDuration  = regexp.MustCompile(` in (<1ms|[0-9][0-9.]*m?s|[0-9]+m[0-9.]+s)$`)
)

// stable makes a text report comparable between runs: durations and temporary folders are replaced.
func stable(text string, dirs map[string]string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		l = eventDuration.ReplaceAllString(l, "${1}DURATION")
		l = doneDuration.ReplaceAllString(l, " in DURATION")
		for dir, name := range dirs {
			l = strings.ReplaceAll(l, dir, name)
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// init --dry-run against three fresh hosts, as an operator sees it: every phase in order, what each would
// write and run on each host, what it cannot know without a running cluster, and the summary. Hosts run one at
// a time (spec.ssh.concurrency 1) so the lines come in a fixed order. Phases that need the API server or
// containerd plan instead of dialing (a dry run dials nothing). cp1 already has the sysctl file privcloud
// writes, so it is not planned there.
func TestInitDryRunGolden(t *testing.T) {
	c, hosts, ex, _ := fakeCluster(t)
	c.Spec.SSH.Concurrency = 1
	bundleDir := t.TempDir()
	c.Spec.Bundle.Path = filepath.Join(bundleDir, "site.tar.zst")
	smallBundle(t, c.Spec.Bundle.Path)
	for i, h := range c.Spec.Hosts {
		hosts[h.Name].OnCommandFunc("os=unknown", factsOf(h.Name, i))
		hosts[h.Name].SetFile(hostResolvConf, []byte("nameserver 192.168.10.1\n"), 0o644)
	}
	hosts["cp1"].SetFile("/etc/sysctl.d/99-privcloud.conf", render("sysctl.conf", nil), 0o644)
	before := map[string][]string{}
	for name, h := range hosts {
		before[name] = h.Files()
	}

	var out bytes.Buffer
	ex.Reporter = report.New(&out, report.Text).WithClock(func() time.Time { return time.Date(2026, 11, 22, 5, 11, 32, 0, time.UTC) })
	ex.DryRun = true
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	golden.Assert(t, stable(out.String(), map[string]string{filepath.Dir(c.Spec.StateDir): "STATEDIR", bundleDir: "BUNDLEDIR"}))

	// the plan changed nothing: no file written, no command but the ones that only read
	readOnly := []string{"os=unknown", "last() {", "PRIVCLOUD_SUMS=", "if out=$(find"}
	for name, h := range hosts {
		if files := h.Files(); !slices.Equal(files, before[name]) {
			t.Errorf("%s: the dry run wrote files: %q", name, files)
		}
		for _, cmd := range h.Commands() {
			if !slices.ContainsFunc(readOnly, func(p string) bool { return strings.HasPrefix(cmd, p) }) {
				t.Errorf("%s: the dry run ran %.60q", name, cmd)
			}
		}
	}
}
