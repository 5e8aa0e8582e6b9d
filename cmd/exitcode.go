package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/fleet"
	"github.com/privcloud/privcloud/hostlock"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/preflight"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// Exit codes. Scripts may rely on them; they only ever gain new values.
const (
	ExitOK             = 0
	ExitFailure        = 1 // anything not listed below
	ExitUsage          = 2 // bad flags, arguments or environment variables
	ExitInvalidConfig  = 3 // cluster.yaml missing, unreadable or invalid
	ExitUnreachable    = 4 // a host could not be connected to or authenticated with
	ExitPhaseFailed    = 5 // a phase, preflight check or remote command failed
	ExitNotImplemented = 6 // the capability asked for does not exist yet
	ExitLocked         = 7 // another privcloud run holds a host's lock
)

var exitCodeHelp = []struct {
	code int
	text string
}{
	{ExitOK, "success"},
	{ExitFailure, "an unexpected failure"},
	{ExitUsage, "bad flags, arguments or PRIVCLOUD_* environment variables"},
	{ExitInvalidConfig, "cluster.yaml is missing, unreadable or invalid (every problem is listed with its field and line), or files an external CA must provide are missing"},
	{ExitUnreachable, "a host could not be reached or refused authentication or its host key did not verify"},
	{ExitPhaseFailed, "a phase, a check (preflight, certificates, bundle verification) or a remote command failed; the message says what and where"},
	{ExitNotImplemented, "the command or phase asked for is not implemented yet"},
	{ExitLocked, "another privcloud run is working on a host (its lock is held); the message names the run, its user and machine"},
}

// ExitCode maps an error to the process exit code.
func ExitCode(err error) int {
	var (
		usage       *usageError
		config      *configError
		selection   *workflow.SelectionError
		unreachable *ssh.UnreachableError
		phase       *workflow.PhaseError
		remote      *fleet.Error
		checks      *preflight.FailedError
		missing     *pki.MissingError
		certs       *certProblemsError
		badBundle   *bundle.VerifyError
		notReady    *notReadyError
		refused     *upgrade.RefusedError
		locked      *hostlock.HeldError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage), errors.As(err, &selection):
		return ExitUsage
	case errors.As(err, &config), errors.As(err, &missing):
		return ExitInvalidConfig
	case errors.As(err, &unreachable):
		return ExitUnreachable
	case errors.As(err, &remote) && len(remote.Unreachable) > 0:
		return ExitUnreachable
	case errors.As(err, &locked):
		return ExitLocked
	case errors.Is(err, workflow.ErrNotImplemented):
		return ExitNotImplemented
	case errors.As(err, &phase), errors.As(err, &remote), errors.As(err, &checks), errors.As(err, &certs),
		errors.As(err, &badBundle), errors.As(err, &notReady), errors.As(err, &refused):
		return ExitPhaseFailed
	}
	return ExitFailure
}

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func asUsageError(err error) error {
	var u *usageError
	if errors.As(err, &u) {
		return err
	}
	return &usageError{err: err}
}

// configError is a cluster.yaml that could not be used.
type configError struct {
	err  error
	path string
}

func (e *configError) Error() string {
	if errors.Is(e.err, fs.ErrNotExist) {
		return fmt.Sprintf("%s does not exist: pass --config, or start from 'privcloud config print-defaults > %s'", e.path, e.path)
	}
	return e.err.Error()
}

func (e *configError) Unwrap() error { return e.err }

func newExitCodesTopic() *cobra.Command {
	var b strings.Builder
	b.WriteString("privcloud exits with one of these codes:\n\n")
	for _, e := range exitCodeHelp {
		fmt.Fprintf(&b, "  %d  %s\n", e.code, e.text)
	}
	return &cobra.Command{Use: "exit-codes", Short: "What privcloud's exit codes mean", Long: b.String()}
}
