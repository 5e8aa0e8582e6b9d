package apilb

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Staging copies the three files into the directory, 0400 and owned by the directory's owner; a certificate
// that does not match its key stages nothing, and the error names the files.
func TestStageCredentials(t *testing.T) {
	src, dir := t.TempDir(), t.TempDir()
	caFile, certFile, keyFile := filepath.Join(src, "ca.crt"), filepath.Join(src, "api-lb.crt"), filepath.Join(src, "api-lb.key")
	writeClientCert(t, certFile, keyFile)
	writeClientCert(t, caFile, filepath.Join(src, "other.key")) // any certificate serves as the CA here
	if err := StageCredentials(caFile, certFile, keyFile, dir); err != nil {
		t.Fatal(err)
	}
	var owner syscall.Stat_t
	if err := syscall.Stat(dir, &owner); err != nil {
		t.Fatal(err)
	}
	for name, from := range map[string]string{StagedCA: caFile, StagedCert: certFile, StagedKey: keyFile} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		if info.Mode().Perm() != 0o400 || st.Uid != owner.Uid || st.Gid != owner.Gid {
			t.Errorf("%s: mode %v owner %d:%d, want 0400 %d:%d", name, info.Mode().Perm(), st.Uid, st.Gid, owner.Uid, owner.Gid)
		}
		got, _ := os.ReadFile(filepath.Join(dir, name))
		want, _ := os.ReadFile(from)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s", name, from)
		}
	}

	// a renewed certificate without its key: the staged files stay as they were
	before, _ := os.ReadFile(filepath.Join(dir, StagedCert))
	writeClientCert(t, certFile, filepath.Join(src, "lost.key"))
	err := StageCredentials(caFile, certFile, keyFile, dir)
	if err == nil || !strings.Contains(err.Error(), certFile) || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("a certificate that does not match its key: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, StagedCert)); !bytes.Equal(before, after) {
		t.Error("a failed staging replaced the certificate")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := StageCredentials(caFile, keyFile, keyFile, filepath.Join(dir, "missing")); err == nil {
		t.Error("staged into a directory that does not exist")
	}
}

// A new check (reloaded credentials) takes over from the next check of each backend: one the new CA no longer
// verifies goes down, and up again when the check passes.
func TestSetCheckTakesOverTheNextChecks(t *testing.T) {
	a := nameServer(t, "a")
	srv := start(t, []string{a}, &health{down: map[string]bool{}})
	waitFor(t, "the backend up", func() bool { return healthyCount(srv) == 1 })
	srv.Balancer.SetCheck(func(context.Context, string) error { return &NotReadyError{Reason: "x509: unknown authority"} })
	waitFor(t, "the backend down under the new check", func() bool { return healthyCount(srv) == 0 })
	if s := srv.Balancer.Status()[0]; !strings.Contains(s.LastError, "unknown authority") {
		t.Errorf("last error %q", s.LastError)
	}
	srv.Balancer.SetCheck(func(context.Context, string) error { return nil })
	waitFor(t, "the backend up again", func() bool { return healthyCount(srv) == 1 })
}
