//go:build integration

package hostlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/testsshd"
	"github.com/privcloud/privcloud/ssh"
)

// server starts a real sshd on loopback and returns a function that opens a new connection to it.
func server(t *testing.T) func() *ssh.Client {
	t.Helper()
	dir := t.TempDir()
	key, err := testsshd.NewUserKey(filepath.Join(dir, "id"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := testsshd.Start(filepath.Join(dir, "sshd"), testsshd.Options{AuthorizedKeys: []xssh.PublicKey{key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	known := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, xssh.MarshalAuthorizedKey(s.HostKey))
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	hk, err := ssh.NewHostKeys([]string{known}, false)
	if err != nil {
		t.Fatal(err)
	}
	d := &ssh.Dialer{HostKeys: hk, Credentials: &ssh.Credentials{Getenv: os.Getenv}, ConnectTimeout: 10 * time.Second,
		CommandTimeout: 2 * time.Minute, Attempts: 3, SumsDir: filepath.Join(dir, "sums")}
	return func() *ssh.Client {
		c, err := d.Connect(context.Background(), api.Host{Name: "h1", Address: "127.0.0.1", Port: s.Port, User: "root", SSHKeyPath: filepath.Join(dir, "id")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// deadPID is the PID of a process of this machine that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestHostLockOnARealHost(t *testing.T) {
	connect := server(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "privcloud.lock")

	first := Self("init")
	a, err := AcquireAt(ctx, connect(), first, path)
	if err != nil {
		t.Fatal(err)
	}
	// a second run, from this live process, is refused and told who holds the lock
	second := Self("upgrade apply")
	_, err = AcquireAt(ctx, connect(), second, path)
	var held *HeldError
	if !errors.As(err, &held) || !strings.Contains(err.Error(), "'privcloud init'") || !strings.Contains(err.Error(), first.Machine) {
		t.Fatalf("second run: want a HeldError naming 'privcloud init' and the machine, got %v", err)
	}
	a.Release()
	b, err := AcquireAt(ctx, connect(), second, path)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}

	// a run whose connection closes (privcloud killed) frees the host without a release
	holder := connect()
	b.Release()
	third := Self("reset")
	if _, err := AcquireAt(ctx, holder, third, path); err != nil {
		t.Fatal(err)
	}
	holder.Close()
	var c *Lock
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err = AcquireAt(ctx, connect(), Self("join"), path); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the lock of a closed connection was not freed: %v", err)
	}
	c.Release()

	// a holder whose privcloud process died on this machine, while its connection lingers on the host (a cut
	// link), is taken over; one of another machine is not
	gone := Self("init")
	gone.PID, gone.Start = deadPID(t), "0"
	if _, err := AcquireAt(ctx, connect(), gone, path); err != nil {
		t.Fatal(err)
	}
	d, err := AcquireAt(ctx, connect(), Self("init"), path)
	if err != nil {
		t.Fatalf("the lock of a dead run of this machine was not taken over: %v", err)
	}
	d.Release()
	elsewhere := Self("init")
	elsewhere.Boot, elsewhere.PID = "another-machine/boot", deadPID(t)
	if _, err := AcquireAt(ctx, connect(), elsewhere, path); err != nil {
		t.Fatal(err)
	}
	if _, err := AcquireAt(ctx, connect(), Self("init"), path); !errors.As(err, &held) {
		t.Fatalf("another machine's run was taken over: %v", err)
	}
}
