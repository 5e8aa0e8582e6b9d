package phases

import (
	"context"
	"fmt"
	"strings"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
)

// The phases use hostops for their work on a host and report what it changed here, in one place.

// ensureService writes a service's files and makes it run, restarted when a file changed (see
// hostops.EnsureRunning), reporting each change.
func ensureService(ctx context.Context, r *workflow.Run, t *workflow.Target, unit string, files ...hostops.File) error {
	changed, err := writeFiles(ctx, r, t, files...)
	if err != nil {
		return err
	}
	what, err := hostops.EnsureRunning(ctx, t.Host, unit, changed)
	if what != "" {
		r.Changed(t.Spec.Name, what)
	}
	return err
}

// writeFiles writes root-owned files (see hostops.WriteFiles), reports each one that changed, and says whether
// any did.
func writeFiles(ctx context.Context, r *workflow.Run, t *workflow.Target, files ...hostops.File) (bool, error) {
	changed, err := hostops.WriteFiles(ctx, t.Host, files...)
	reportChanges(r, t, changed)
	return len(changed) > 0, err
}

// runScript runs a script that prints one line per thing it changed; each becomes a change. A dry run plans
// the script by what it does rather than recording its text.
func runScript(ctx context.Context, r *workflow.Run, t *workflow.Target, what, script string) error {
	if !r.Wet(t.Spec.Name, what) {
		return nil
	}
	changes, err := hostops.RunScript(ctx, t.Host, what, script)
	reportChanges(r, t, changes)
	return err
}

func reportChanges(r *workflow.Run, t *workflow.Target, changes []string) {
	for _, c := range changes {
		r.Changed(t.Spec.Name, c)
	}
}

// requireBinary fails when the bundle did not install the program name on the host, saying how else to go on:
// a bundle made from an older description lacks it, and a unit that cannot start would only time out.
func requireBinary(ctx context.Context, r *workflow.Run, t *workflow.Target, name, otherwise string) error {
	return requireBinaries(ctx, r, t, binaryNeed{name, otherwise})
}

// binaryNeed is a bundle component a phase needs on the host, and what else the user can do without it.
type binaryNeed struct{ name, otherwise string }

// requireBinaries is requireBinary for several components, with one command.
func requireBinaries(ctx context.Context, r *workflow.Run, t *workflow.Target, needs ...binaryNeed) error {
	if r.DryRun || len(needs) == 0 { // a plan installed nothing to look for
		return nil
	}
	var script []string
	for _, n := range needs {
		script = append(script, "test -x "+binaryPath(n.name)+" || echo "+n.name)
	}
	res, err := t.Host.Run(ctx, strings.Join(script, "; "))
	if err != nil {
		return err
	}
	for _, missing := range strings.Fields(string(res.Stdout)) {
		for _, n := range needs {
			if n.name == missing {
				return missingBinary(n.name, n.otherwise)
			}
		}
	}
	return nil
}

// missingBinary says that the bundle lacks a component every node runs, and what else the user can do.
func missingBinary(name, otherwise string) error {
	return fmt.Errorf("the bundle has no %s component, which every node runs: build the bundle from a description that lists it (see e2e/lab/bundle.yaml), or %s", name, otherwise)
}

// sshAction is a planned action described by what it does, for work a dry run does not record command by
// command (scripts, API calls).
func sshAction(host, what string) ssh.Action { return ssh.Action{Host: host, Kind: "run", Cmd: what} }
