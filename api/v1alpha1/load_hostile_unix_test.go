//go:build unix

package v1alpha1

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notRegular loads path, expecting it refused as what it is, naming it, without reading it.
func notRegular(t *testing.T, path, kind string) {
	t.Helper()
	_, err := Load(path)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != path || !strings.Contains(err.Error(), "not a regular file but "+kind) {
		t.Fatalf("want %s refused as %s, got %v", path, kind, err)
	}
}

// /dev/zero never ends: reading it whole would fill memory.
func TestDeviceIsRefused(t *testing.T) {
	notRegular(t, "/dev/zero", "a character device")
}

// Opening a FIFO for reading waits for a writer: it must be refused before it is opened.
func TestFIFOIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		notRegular(t, p, "a named pipe (FIFO)")
	}()
	select {
	case <-done:
	case <-time.After(sanityBound):
		t.Fatal("Load waited on the FIFO")
	}
}
