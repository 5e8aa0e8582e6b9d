// Package hostops holds the compound operations privcloud performs on one host: write files, make a service
// run, run a script whose output lines are its changes, read a file that may be missing, talk to etcd, probe a
// health endpoint through the SSH connection. They take an ssh.Host and return what they changed, so any Host
// (a real one, the dry-run recorder, the fake of unit tests) serves; the phases decide what to do and in which
// order, and report the changes.
package hostops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/privcloud/privcloud/ssh"
)

// File is a root-owned file privcloud writes to a host: a unit, a configuration, a bootstrap file.
type File struct {
	Path    string
	Content []byte
	Mode    os.FileMode
}

// WriteFiles writes files to the host atomically, leaving unchanged ones alone, and returns the paths of
// those that changed.
func WriteFiles(ctx context.Context, h ssh.Host, files ...File) ([]string, error) {
	puts := make([]ssh.Put, len(files))
	for i, f := range files {
		puts[i] = f.Put()
	}
	return ssh.UploadAll(ctx, h, puts)
}

// Put is the upload that writes f, owned by root.
func (f File) Put() ssh.Put {
	return ssh.Put{Content: ssh.Bytes(f.Content), Dst: f.Path, Mode: f.Mode, Owner: "root:root"}
}

// EnsureRunning makes a service run after its files were written: it restarts the service when restart is
// set (a file changed), starts it when it is not running, and otherwise leaves it alone, so a converged host is
// not disturbed. It returns what happened ("UNIT restarted", "UNIT started"), or "" when nothing did. Unit
// names are privcloud's own.
func EnsureRunning(ctx context.Context, h ssh.Host, unit string, restart bool) (string, error) {
	// a converged host costs one query of three properties: systemd reloads its units only when one changed (a
	// reload takes a few hundred milliseconds), or when an earlier run wrote a file and stopped before reloading;
	// the unit counts as enabled and as running as 'systemctl is-enabled' and 'is-active' would say
	script := fmt.Sprintf(`s=$(systemctl show -p NeedDaemonReload -p UnitFileState -p ActiveState %[1]s)
nl='
'
s=$nl$s$nl
case "$s" in *"${nl}NeedDaemonReload=yes${nl}"*) systemctl daemon-reload ;; esac
case "$s" in %[2]s) ;; *) systemctl enable -q %[1]s ;; esac
case "$s" in *"${nl}ActiveState=active${nl}"*|*"${nl}ActiveState=reloading${nl}"*) ;; *) systemctl start %[1]s; echo started ;; esac`, unit, enabledStates)
	if restart {
		script = LoadUnitScript(unit) + fmt.Sprintf(" && systemctl restart %[1]s && echo restarted", unit)
	}
	res, err := h.Run(ctx, script)
	if err != nil {
		return "", err
	}
	if s := strings.TrimSpace(string(res.Stdout)); s != "" {
		return unit + " " + s, nil
	}
	return "", nil
}

// LoadUnitScript has systemd read a unit's changed files and enables the unit: one reload, as 'systemctl enable'
// reloads by itself after enabling (each reload runs every generator and re-reads every unit: on a host
// being installed, halving them is a visible share of its CPU).
func LoadUnitScript(unit string) string {
	return fmt.Sprintf("if systemctl is-enabled -q %[1]s 2>/dev/null; then systemctl daemon-reload; else systemctl enable -q %[1]s; fi", unit)
}

// enabledStates matches the unit file states for which 'systemctl is-enabled' succeeds, as a shell case pattern
// over the output of 'systemctl show'.
var enabledStates = func() string {
	var alts []string
	for _, st := range []string{"enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "transient"} {
		alts = append(alts, `*"${nl}UnitFileState=`+st+`${nl}"*`)
	}
	return strings.Join(alts, "|")
}()

// RunScript runs a script that prints one line per thing it changed (removed, restored) and returns those
// lines. A failure names what the script does and carries its stderr.
func RunScript(ctx context.Context, h ssh.Host, what, script string) ([]string, error) {
	res, err := h.Run(ctx, script)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(string(res.Stderr)))
	}
	var changes []string
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		if line != "" {
			changes = append(changes, line)
		}
	}
	return changes, nil
}

// ReadIfExists returns a remote file's content, or nothing when it does not exist.
func ReadIfExists(ctx context.Context, h ssh.Host, path string) ([]byte, error) {
	data, err := h.ReadFile(ctx, path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// JournalTail is the end of a unit's journal on the host, for error messages.
func JournalTail(ctx context.Context, h ssh.Host, unit string) string {
	res, _ := h.Run(ctx, "journalctl -u "+ssh.ShellQuote(unit)+" -n 25 --no-pager", ssh.ReadOnly())
	return string(res.Stdout)
}

// SwitchLinkScript points link at dst, printing link when it changed. A new link is renamed over the old:
// switching versions never leaves a moment without one.
func SwitchLinkScript(link, dst string) string {
	return fmt.Sprintf("if [ \"$(readlink %[1]s)\" != %[2]s ]; then mkdir -p \"$(dirname %[1]s)\"; ln -sfn %[2]s %[1]s.privcloud && mv -Tf %[1]s.privcloud %[1]s && echo %[1]s; fi\n",
		ssh.ShellQuote(link), ssh.ShellQuote(dst))
}

// LinkTargets reads where each of links points ("" for a path that is no link or is missing) in one command
// (LinkTargetsScript).
func LinkTargets(ctx context.Context, h ssh.Host, links []string) (map[string]string, error) {
	res, err := h.Run(ctx, LinkTargetsScript(links), ssh.ReadOnly())
	if err != nil {
		return nil, err
	}
	targets := map[string]string{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if link, target, ok := strings.Cut(line, "\t"); ok {
			targets[link] = target
		}
	}
	return targets, nil
}

// LinkTargetsScript prints "LINK<tab>TARGET" for links (the target empty, or the line missing, for a path that
// is no link). GNU find prints them all in one process, missing paths or not: it is asked about / first, whose
// line shows it could and is then dropped. Where it cannot (another find), readlink reads them one by one.
func LinkTargetsScript(links []string) string {
	all := ssh.ShellQuoteAll(links)
	return fmt.Sprintf(`if out=$(find / %[1]s -maxdepth 0 -printf '%%p\t%%l\n' 2>/dev/null) || [ -n "$out" ]; then
  case $out in *'
'*) printf '%%s\n' "${out#*
}" ;; esac
else for l in %[1]s; do printf '%%s\t%%s\n' "$l" "$(readlink "$l")"; done; fi`, all)
}

// EtcdctlBase is etcdctl talking to the host's own member with the healthcheck client's certificate.
const EtcdctlBase = "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt " +
	"--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key"

// Etcdctl runs etcdctl on a host against its own member, each request bounded to 10 s; args are privcloud's.
func Etcdctl(ctx context.Context, h ssh.Host, args string, opts ...ssh.RunOption) (ssh.Result, error) {
	return h.Run(ctx, EtcdctlBase+" --command-timeout=10s "+args, opts...)
}
