//go:build unix

package cmd

import (
	"strings"
	"testing"
)

// A path that is not a file is a configuration error, not a crash: /dev/zero would otherwise be read forever.
func TestValidateDeviceIsConfigError(t *testing.T) {
	r := run(t, "config", "validate", "-f", "/dev/zero")
	if r.code != ExitInvalidConfig || !strings.Contains(r.errOut, "/dev/zero") ||
		!strings.Contains(r.errOut, "not a regular file but a character device") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.errOut)
	}
}
