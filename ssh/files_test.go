package ssh

import (
	"os/exec"
	"testing"
)

// The shell's record names must be the ones States computes in Go, or a converged check would hash every file
// again.
func TestRecordNameInShellMatchesGo(t *testing.T) {
	for _, p := range []string{"/etc/kubernetes/pki/ca.crt", "/a b/c%d", "//x//y/", "rel/path", "noslash", "/"} {
		out, err := exec.Command("/bin/sh", "-c", "PRIVCLOUD_SUMS=/sums\n"+hashFunc+`record "$1"; printf %s "$rec"`, "sh", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := "/sums/" + recordName(p); string(out) != want {
			t.Errorf("record %q = %q, want %q", p, out, want)
		}
	}
}
