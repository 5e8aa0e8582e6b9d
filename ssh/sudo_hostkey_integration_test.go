//go:build integration

package ssh

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	xssh "golang.org/x/crypto/ssh"

	"github.com/privcloud/privcloud/internal/testsshd"
)

// A NOPASSWD rule means sudo never reads stdin: a password written there anyway would reach the command.
func TestSudoNoPasswordRuleNeverSeesPassword(t *testing.T) {
	const password = "Pa55-word"
	e, s := userServer(t, testsshd.Options{Password: password, SudoNoPassword: true})
	d := e.dialer(false)
	d.SudoPassword = password
	c := connect(t, d, e.host(s, "privtest"))
	ctx := context.Background()

	// more first commands at once than there are session slots: one probe, none waits forever
	var wg sync.WaitGroup
	for range 2 * maxSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := c.Run(ctx, "cat"); err != nil || len(res.Stdout) != 0 {
				t.Errorf("parallel cat without stdin: %q %v", res.Stdout, err)
			}
		}()
	}
	wg.Wait()
	res, err := c.Run(ctx, "id -un; cat")
	if err != nil || string(res.Stdout) != "root\n" {
		t.Errorf("cat without stdin: %q %q %v", res.Stdout, res.Stderr, err)
	}
	if strings.Contains(string(res.Stdout)+string(res.Stderr), password) {
		t.Errorf("the sudo password reached the command: %q %q", res.Stdout, res.Stderr)
	}
	res, err = c.Run(ctx, "cat", WithStdin(strings.NewReader("payload")))
	if err != nil || string(res.Stdout) != "payload" {
		t.Errorf("cat with stdin: %q %q %v", res.Stdout, res.Stderr, err)
	}

	src := filepath.Join(e.dir, "upload-src")
	want := []byte("file content\nline two\n")
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Dir, "root-only")
	dst := filepath.Join(dir, "f")
	if _, err := c.Upload(ctx, LocalFile(src), dst, 0o600, WithOwner("root:root")); err != nil {
		t.Fatalf("upload: %v (leftovers %v)", err, leftovers(dir))
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("uploaded file holds %q (%v), want %q", got, err, want)
	}
	if l := leftovers(dir); len(l) != 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

// A server with ed25519, ECDSA and RSA keys presents the one the client asks for; with a pin and an empty
// known_hosts, that must be the pinned one.
func TestPinnedHostKeyAmongSeveral(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{ECDSAHostKey: true, RSAHostKey: true})
	pins := []struct {
		name string
		key  xssh.PublicKey
	}{{"ed25519", s.HostKey}, {"ecdsa", s.ECDSAKey}, {"rsa", s.RSAKey}}
	for _, p := range pins {
		h := e.host(s, "root")
		h.HostKey = string(xssh.MarshalAuthorizedKey(p.key))
		c, err := e.dialer(false).Connect(context.Background(), h)
		if err != nil {
			t.Errorf("pinned %s key: %v", p.name, err)
			continue
		}
		c.Close()
	}

	stranger, _ := testsshd.NewUserKey("")
	for _, wrong := range []xssh.PublicKey{stranger.PublicKey(), newECDSAKey(t)} {
		h := e.host(s, "root")
		h.HostKey = string(xssh.MarshalAuthorizedKey(wrong))
		if _, err := e.dialer(true).Connect(context.Background(), h); hostKeyProblem(err) != HostKeyNotOnPin {
			t.Errorf("wrong %s pin: want pin mismatch, got %v", wrong.Type(), err)
		}
	}
}

func newECDSAKey(t *testing.T) xssh.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := xssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
