//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// A failed scenario prints its hosts' logs, which are long: its failures are printed again after them, so
// that the end of the output, where a CI log is cut, says what failed.
var (
	failuresMu sync.Mutex
	failures   = map[string][]string{} // test name -> messages
)

func record(t *testing.T, msg string) {
	failuresMu.Lock()
	defer failuresMu.Unlock()
	failures[t.Name()] = append(failures[t.Name()], msg)
}

// failuresOf are the messages of t and its subtests.
func failuresOf(t *testing.T) string {
	failuresMu.Lock()
	defer failuresMu.Unlock()
	var out []string
	for name, msgs := range failures {
		if name == t.Name() || strings.HasPrefix(name, t.Name()+"/") {
			out = append(out, msgs...)
		}
	}
	return strings.Join(out, "\n")
}

func errorf(t *testing.T, format string, args ...any) {
	t.Helper()
	record(t, fmt.Sprintf(format, args...))
	t.Errorf(format, args...)
}

func errorln(t *testing.T, args ...any) {
	t.Helper()
	record(t, fmt.Sprint(args...))
	t.Error(args...)
}

func fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	record(t, fmt.Sprintf(format, args...))
	t.Fatalf(format, args...)
}

func fatal(t *testing.T, args ...any) {
	t.Helper()
	record(t, fmt.Sprint(args...))
	t.Fatal(args...)
}
