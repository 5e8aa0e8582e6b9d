package hostops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

func TestWriteFilesReportsOnlyWhatChanged(t *testing.T) {
	h := sshtest.NewFake("h1")
	h.SetFile("/etc/a", []byte("same\n"), 0o644)
	changed, err := WriteFiles(context.Background(), h, File{Path: "/etc/a", Content: []byte("same\n"), Mode: 0o644},
		File{Path: "/etc/b", Content: []byte("new\n"), Mode: 0o600})
	if err != nil || strings.Join(changed, " ") != "/etc/b" {
		t.Fatalf("changed %v, %v; want only /etc/b", changed, err)
	}
	if data, mode, _ := h.File("/etc/b"); string(data) != "new\n" || mode != 0o600 {
		t.Errorf("/etc/b = %q %o", data, mode)
	}
}

func TestEnsureRunningRestartsOnlyForAChange(t *testing.T) {
	ctx := context.Background()
	h := sshtest.NewFake("h1")
	h.OnCommand(LoadUnitScript("etcd")+" && systemctl restart etcd", ssh.Result{Stdout: []byte("restarted\n")}, nil)
	if what, err := EnsureRunning(ctx, h, "etcd", true); err != nil || what != "etcd restarted" {
		t.Fatalf("a changed file: %q, %v", what, err)
	}
	h2 := sshtest.NewFake("h2")
	if what, err := EnsureRunning(ctx, h2, "etcd", false); err != nil || what != "" {
		t.Fatalf("a converged, running service: %q, %v", what, err)
	}
	cmds := h2.Commands()
	if len(cmds) != 1 || strings.Contains(cmds[0], "systemctl restart") || !strings.Contains(cmds[0], "systemctl show -p NeedDaemonReload -p UnitFileState -p ActiveState etcd") {
		t.Errorf("a converged service must only be checked, not restarted: %q", cmds)
	}
}

func TestRunScriptTurnsLinesIntoChangesAndNamesFailures(t *testing.T) {
	ctx := context.Background()
	h := sshtest.NewFake("h1")
	h.OnCommand("remove", ssh.Result{Stdout: []byte("removed /a\n\nremoved /b\n")}, nil)
	changes, err := RunScript(ctx, h, "remove things", "remove")
	if err != nil || strings.Join(changes, "|") != "removed /a|removed /b" {
		t.Fatalf("changes %q, %v", changes, err)
	}
	h.OnCommand("fail", ssh.Result{ExitCode: 3, Stderr: []byte("no such unit\n")}, nil)
	if _, err := RunScript(ctx, h, "stop the units", "fail"); err == nil || !strings.Contains(err.Error(), "stop the units") ||
		!strings.Contains(err.Error(), "no such unit") {
		t.Errorf("a failed script: %v", err)
	}
}

func TestReadIfExists(t *testing.T) {
	h := sshtest.NewFake("h1")
	if data, err := ReadIfExists(context.Background(), h, "/nope"); err != nil || data != nil {
		t.Errorf("a missing file: %q, %v", data, err)
	}
	h.SetFile("/etc/x", []byte("x"), 0o644)
	if data, err := ReadIfExists(context.Background(), h, "/etc/x"); err != nil || string(data) != "x" {
		t.Errorf("a present file: %q, %v", data, err)
	}
}

func TestSwitchLinkScriptQuotes(t *testing.T) {
	s := SwitchLinkScript("/usr/local/bin/x y", "/opt/privcloud/x/1/x")
	if !strings.Contains(s, "'/usr/local/bin/x y'") || !strings.Contains(s, "mv -Tf '/usr/local/bin/x y'.privcloud '/usr/local/bin/x y'") {
		t.Errorf("link switch script:\n%s", s)
	}
}

// localShell runs commands with this machine's /bin/sh: the scripts themselves under test.
type localShell struct{ *sshtest.Fake }

func (l localShell) Run(ctx context.Context, cmd string, _ ...ssh.RunOption) (ssh.Result, error) {
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", cmd).Output()
	return ssh.Result{Stdout: out}, err
}

// LinkTargets reads every link in one find, a path missing or not.
func TestLinkTargets(t *testing.T) {
	dir := t.TempDir()
	a, b, missing := filepath.Join(dir, "a"), filepath.Join(dir, "b b"), filepath.Join(dir, "missing")
	os.Symlink("/opt/privcloud/a/1/a", a)
	os.Symlink("/opt/privcloud/b/2/b", b)
	h := localShell{sshtest.NewFake("h1")}
	for _, links := range [][]string{{a, b}, {a, b, missing}} {
		got, err := LinkTargets(context.Background(), h, links)
		if err != nil {
			t.Fatal(err)
		}
		if got[a] != "/opt/privcloud/a/1/a" || got[b] != "/opt/privcloud/b/2/b" || got[missing] != "" {
			t.Errorf("%q: targets %q", links, got)
		}
	}
}
