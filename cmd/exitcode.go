package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privcloud/privcloud/internal/exitclass"
)

// Exit codes. Scripts may rely on them; they only ever gain new values.
const (
	ExitOK             = 0
	ExitFailure        = 1 // anything not listed below
	ExitUsage          = 2 // bad flags, arguments or environment variables
	ExitInvalidConfig  = 3 // cluster.yaml missing, unreadable or invalid
	ExitUnreachable    = 4 // a host could not be connected to or authenticated with
	ExitPhaseFailed    = 5 // a phase, preflight check or remote command failed
	ExitNotImplemented = 6 // reserved: no longer returned; scripts may still test for it
	ExitLocked         = 7 // another privcloud run holds a host's lock
	ExitDegraded       = 8 // privcloud status found the cluster degraded
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
	{ExitNotImplemented, "reserved and no longer returned (it meant a capability not built yet)"},
	{ExitLocked, "another privcloud run is working on a host (its lock is held); the message names the run, its user and machine"},
	{ExitDegraded, "privcloud status found the cluster degraded (a host unreachable, a service down, a node not Ready, ...): it lists each problem"},
}

var exitCodes = map[exitclass.Class]int{
	exitclass.Usage:       ExitUsage,
	exitclass.Config:      ExitInvalidConfig,
	exitclass.Unreachable: ExitUnreachable,
	exitclass.Locked:      ExitLocked,
	exitclass.PhaseFailed: ExitPhaseFailed,
	exitclass.Degraded:    ExitDegraded,
}

// ExitCode maps an error to the process exit code: that of the highest class among the errors it wraps.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if code, ok := exitCodes[exitclass.Of(err, nil)]; ok {
		return code
	}
	return ExitFailure
}

type usageError struct{ err error }

func (e *usageError) Error() string              { return e.err.Error() }
func (e *usageError) Unwrap() error              { return e.err }
func (e *usageError) ExitClass() exitclass.Class { return exitclass.Usage }

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

func (e *configError) Unwrap() error              { return e.err }
func (e *configError) ExitClass() exitclass.Class { return exitclass.Config }

func newExitCodesTopic() *cobra.Command {
	var b strings.Builder
	b.WriteString("privcloud exits with one of these codes:\n\n")
	for _, e := range exitCodeHelp {
		fmt.Fprintf(&b, "  %d  %s\n", e.code, e.text)
	}
	return &cobra.Command{Use: "exit-codes", Short: "What privcloud's exit codes mean", Long: b.String()}
}
