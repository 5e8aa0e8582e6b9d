//go:build integration

package ssh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/testsshd"
)

// env is one test's client side: a user key, a known_hosts file and the servers started for it.
type env struct {
	t          testing.TB
	dir        string
	keyPath    string
	key        xssh.Signer
	knownHosts string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, keyPath: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}
	var err error
	if e.key, err = testsshd.NewUserKey(e.keyPath); err != nil {
		t.Fatal(err)
	}
	return e
}

// server starts an sshd that accepts the env's key; its log is printed if the test fails.
func (e *env) server(o testsshd.Options) *testsshd.Server {
	e.t.Helper()
	o.AuthorizedKeys = append(o.AuthorizedKeys, e.key.PublicKey())
	s, err := testsshd.Start(filepath.Join(e.dir, fmt.Sprintf("sshd-%d", rand.Int())), o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		s.Stop()
		if e.t.Failed() {
			e.t.Logf("sshd %s log:\n%s", s.Addr(), s.Log())
		}
	})
	return s
}

func (e *env) trust(lines ...string) {
	e.t.Helper()
	f, err := os.OpenFile(e.knownHosts, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintln(f, l)
	}
}

func (e *env) dialer(acceptNew bool) *Dialer {
	e.t.Helper()
	hk, err := NewHostKeys([]string{e.knownHosts}, acceptNew)
	if err != nil {
		e.t.Fatal(err)
	}
	// the servers run on this machine: the record of uploaded files' hashes goes to the test's folder
	return &Dialer{HostKeys: hk, Credentials: &Credentials{Getenv: os.Getenv}, ConnectTimeout: 10 * time.Second,
		CommandTimeout: 2 * time.Minute, KeepAlive: 5 * time.Second, Attempts: 3, SumsDir: filepath.Join(e.dir, "sums")}
}

func (e *env) host(s *testsshd.Server, user string) api.Host {
	return api.Host{Name: fmt.Sprintf("h%d", s.Port), Address: "127.0.0.1", Port: s.Port, User: user, SSHKeyPath: e.keyPath}
}

// rootClient is a client connected as root to a new sshd whose host key it trusts.
func rootClient(t testing.TB) (*env, *Client) {
	t.Helper()
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	return e, connect(t, e.dialer(false), e.host(s, "root"))
}

// userServer starts an sshd for the test user privtest with o, in a new env whose folder that user may read
// (sshd reads its authorized_keys as the user), and trusts its host key.
func userServer(t testing.TB, o testsshd.Options) (*env, *testsshd.Server) {
	t.Helper()
	e := newEnv(t)
	for _, d := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o.User = "privtest"
	s := e.server(o)
	e.trust(s.KnownHostsLine(s.HostKey))
	return e, s
}

func connect(t testing.TB, d *Dialer, h api.Host) *Client {
	t.Helper()
	c, err := d.Connect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hostKeyProblem(err error) HostKeyProblem {
	var hk *HostKeyError
	if errors.As(err, &hk) {
		return hk.Problem
	}
	return ""
}

func TestRunCommands(t *testing.T) {
	_, c := rootClient(t)
	ctx := context.Background()

	res, err := c.Run(ctx, "echo out; echo err >&2")
	if err != nil || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Fatalf("Run = %q %q %v", res.Stdout, res.Stderr, err)
	}
	res, err = c.Run(ctx, "echo nope >&2; exit 7")
	var ee *ExecError
	if !errors.As(err, &ee) || ee.ExitCode != 7 || res.ExitCode != 7 || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("want ExecError exit 7 with stderr, got %v (%+v)", err, res)
	}
	res, err = c.Run(ctx, "cat", WithStdin(strings.NewReader("from stdin")))
	if err != nil || string(res.Stdout) != "from stdin" {
		t.Fatalf("stdin: %q %v", res.Stdout, err)
	}
	// more parallel commands than OpenSSH's MaxSessions (10) on one connection: they queue, none is refused
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Run(ctx, "sleep 0.1"); err != nil {
				t.Log(err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of 25 parallel commands failed", failed.Load())
	}
}

func TestContextCancelKillsRemoteCommand(t *testing.T) {
	_, c := rootClient(t)
	marker := fmt.Sprintf("sleep %d.%d", 40+rand.IntN(10), rand.IntN(1000))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, marker)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("want a deadline error soon, got %v after %s", err, time.Since(start))
	}
	// the remote process is gone too (sshd runs on this machine, so pgrep sees it)
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command("pgrep", "-f", "^"+marker).Run() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("remote %q still running after cancel", marker)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHostKeyMismatchRefusedWithoutRetry(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	other, _ := testsshd.NewUserKey("")
	e.trust(s.KnownHostsLine(other.PublicKey()))
	d := e.dialer(true) // even trust-on-first-use never accepts a changed key
	var dials atomic.Int32
	d.dialTCP = func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	_, err := d.Connect(context.Background(), e.host(s, "root"))
	var ue *UnreachableError
	if !errors.As(err, &ue) || hostKeyProblem(err) != HostKeyChanged {
		t.Fatalf("want a changed-key refusal, got %v", err)
	}
	if !strings.Contains(err.Error(), xssh.FingerprintSHA256(s.HostKey)) || !strings.Contains(err.Error(), e.knownHosts+":1") {
		t.Errorf("message must show the presented fingerprint and the known entry: %v", err)
	}
	if dials.Load() != 1 {
		t.Errorf("a host-key failure was retried: %d dials", dials.Load())
	}
}

func TestUnknownHostRefusedUnlessAcceptingNew(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	_, err := e.dialer(false).Connect(context.Background(), e.host(s, "root"))
	if hostKeyProblem(err) != HostKeyUnknown {
		t.Fatalf("want unknown-host refusal, got %v", err)
	}
	for _, want := range []string{xssh.FingerprintSHA256(s.HostKey), "--accept-new-host-keys", "ssh-keyscan -p"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
	// trust on first use, asked for: recorded once, hashed, even with parallel connections
	d := e.dialer(true)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.Connect(context.Background(), e.host(s, "root"))
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	data, _ := os.ReadFile(e.knownHosts)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "|1|") {
		t.Fatalf("known_hosts after accept-new = %q, want one hashed line", data)
	}
	if fi, _ := os.Stat(e.knownHosts); fi.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %o", fi.Mode().Perm())
	}
	// and now it is known without accepting anything
	connect(t, e.dialer(false), e.host(s, "root"))
}

func TestHostKeyAlgorithmFollowsKnownHosts(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{RSAHostKey: true})
	// Only the RSA key is known. A client offering its default order would get the ed25519 key and call it
	// changed; privcloud asks for the algorithm known_hosts lists.
	e.trust(s.KnownHostsLine(s.RSAKey))
	connect(t, e.dialer(false), e.host(s, "root"))
}

func TestHostCertificateFromTrustedCA(t *testing.T) {
	e := newEnv(t)
	ca, _ := testsshd.NewUserKey("")
	s := e.server(testsshd.Options{HostCA: ca})
	// x/crypto's known_hosts matching applies a bare "*" to port 22 only, so the pattern names the port.
	e.trust(fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s", s.Port, strings.TrimSpace(string(xssh.MarshalAuthorizedKey(ca.PublicKey())))))
	connect(t, e.dialer(false), e.host(s, "root"))

	// a certificate from a CA nobody trusts is no credential, even when accepting new hosts
	e2 := newEnv(t)
	stranger, _ := testsshd.NewUserKey("")
	s2 := e2.server(testsshd.Options{HostCA: stranger})
	e2.trust(fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s", s2.Port, strings.TrimSpace(string(xssh.MarshalAuthorizedKey(ca.PublicKey())))))
	if _, err := e2.dialer(true).Connect(context.Background(), e2.host(s2, "root")); hostKeyProblem(err) != HostKeyBadCert {
		t.Errorf("certificate from an untrusted CA accepted: %v", err)
	}
}

func TestRevokedHostKeyRefused(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey), "@revoked * "+strings.TrimSpace(string(xssh.MarshalAuthorizedKey(s.HostKey))))
	_, err := e.dialer(true).Connect(context.Background(), e.host(s, "root"))
	if hostKeyProblem(err) != HostKeyRevoked {
		t.Fatalf("want revoked, got %v", err)
	}
}

func TestPinnedHostKey(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	h := e.host(s, "root")
	h.HostKey = string(xssh.MarshalAuthorizedKey(s.HostKey))
	connect(t, e.dialer(false), h) // the pin is trust enough; known_hosts is empty

	other, _ := testsshd.NewUserKey("")
	h.HostKey = string(xssh.MarshalAuthorizedKey(other.PublicKey()))
	if _, err := e.dialer(true).Connect(context.Background(), h); hostKeyProblem(err) != HostKeyNotOnPin {
		t.Fatalf("want pin mismatch, got %v", err)
	}
}

func TestWrongUserKeyRefusedWithoutRetry(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	wrong := filepath.Join(e.dir, "wrong_key")
	if _, err := testsshd.NewUserKey(wrong); err != nil {
		t.Fatal(err)
	}
	h := e.host(s, "root")
	h.SSHKeyPath = wrong
	d := e.dialer(false)
	var dials atomic.Int32
	d.dialTCP = func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	_, err := d.Connect(context.Background(), h)
	var ae *AuthError
	if !errors.As(err, &ae) || dials.Load() != 1 {
		t.Fatalf("want one AuthError attempt, got %v after %d dials", err, dials.Load())
	}
}

func TestKeyFileChecks(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	if err := os.Chmod(e.keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.dialer(false).Connect(context.Background(), e.host(s, "root"))
	if err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a world-readable key must be refused: %v", err)
	}
	h := e.host(s, "root")
	h.SSHKeyPath = filepath.Join(e.dir, "absent")
	if _, err := e.dialer(false).Connect(context.Background(), h); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("a missing key must be named: %v", err)
	}
}

func TestEncryptedKeyPassphraseFromEnvironment(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	enc := filepath.Join(e.dir, "enc_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", enc).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(enc + ".pub")
	os.WriteFile(filepath.Join(s.Dir, "authorized_keys"), pub, 0o644)
	h := e.host(s, "root")
	h.SSHKeyPath = enc
	d := e.dialer(false)
	d.Credentials.Getenv = func(string) string { return "" }
	if _, err := d.Connect(context.Background(), h); err == nil || !strings.Contains(err.Error(), PassphraseEnv) {
		t.Fatalf("no passphrase and no terminal must say how to give one: %v", err)
	}
	d = e.dialer(false)
	d.Credentials.Getenv = func(k string) string {
		if k == PassphraseEnv {
			return "s3cret"
		}
		return ""
	}
	connect(t, d, h)
}

func TestSudoWithPassword(t *testing.T) {
	e, s := userServer(t, testsshd.Options{Password: "Pa55-word"})
	d := e.dialer(false)
	d.SudoPassword = "Pa55-word"
	c := connect(t, d, e.host(s, "privtest"))
	res, err := c.Run(context.Background(), "id -un; cat", WithStdin(strings.NewReader("payload")))
	if err != nil || string(res.Stdout) != "root\npayload" {
		t.Fatalf("sudo: %q %v", res.Stdout, err)
	}
	// uploads run through sudo too: a root-owned place the user could not write
	if _, err := c.Upload(context.Background(), Bytes("x\n"), filepath.Join(s.Dir, "root-only", "f"), 0o600, WithOwner("root:root")); err != nil {
		t.Fatal(err)
	}
	d.SudoPassword = "wrong"
	c2 := connect(t, d, e.host(s, "privtest"))
	_, err = c2.Run(context.Background(), "id -un")
	var ee *ExecError
	if !errors.As(err, &ee) {
		t.Fatalf("wrong sudo password must fail the command, got %v", err)
	}
	if strings.Contains(ee.Cmd, "wrong") || strings.Contains(err.Error(), "wrong\n") {
		t.Errorf("the password leaked into the command or error: %v", err)
	}
}

func randomFile(t *testing.T, dir string, size int64) (string, string) {
	t.Helper()
	p := filepath.Join(dir, "payload")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{byte(size)})
	if _, err := io.CopyN(io.MultiWriter(f, h), src, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

func remoteSHA(t *testing.T, c *Client, path string) string {
	t.Helper()
	res, err := c.Run(context.Background(), "sha256sum "+path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(res.Stdout))[0]
}

func TestUpload200MB(t *testing.T) {
	e, c := rootClient(t)
	src, sum := randomFile(t, e.dir, 200<<20)
	dst := filepath.Join(e.dir, "remote", "nested", "payload")
	start := time.Now()
	changed, err := c.Upload(context.Background(), LocalFile(src), dst, 0o640)
	if err != nil || !changed {
		t.Fatalf("Upload = %v, %v", changed, err)
	}
	t.Logf("200 MB uploaded in %s", time.Since(start))
	if got := remoteSHA(t, c, dst); got != sum {
		t.Fatalf("remote sha256 %s, want %s", got, sum)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %o", fi.Mode().Perm())
	}
	changed, err = c.Upload(context.Background(), LocalFile(src), dst, 0o640)
	if err != nil || changed {
		t.Errorf("same content again: changed=%v err=%v, want a skip", changed, err)
	}
	// a change the record cannot vouch for is seen: same size, new content
	f, _ := os.OpenFile(dst, os.O_WRONLY, 0)
	f.WriteAt([]byte{0xff}, 1000)
	f.Close()
	if changed, err := c.Upload(context.Background(), LocalFile(src), dst, 0o640); err != nil || !changed {
		t.Errorf("a file changed in place must be sent again: changed=%v err=%v", changed, err)
	}
	if got := remoteSHA(t, c, dst); got != sum {
		t.Fatalf("after re-sending: %s, want %s", got, sum)
	}
	changed, err = c.Upload(context.Background(), LocalFile(src), dst, 0o600)
	if err != nil || !changed {
		t.Errorf("a new mode must be applied: changed=%v err=%v", changed, err)
	}
	data, err := c.ReadFile(context.Background(), filepath.Join(e.dir, "nothing-here"))
	if !errors.Is(err, fs.ErrNotExist) || data != nil {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
	local := filepath.Join(e.dir, "downloaded")
	if err := c.Download(context.Background(), dst, local); err != nil {
		t.Fatal(err)
	}
	if _, got := fileSHA(t, local); got != sum {
		t.Errorf("downloaded sha256 %s, want %s", got, sum)
	}
}

func fileSHA(t *testing.T, p string) (int64, string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, _ := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil))
}

// cutConn closes itself once limit bytes have been written through it, as a dropped link would.
type cutConn struct {
	net.Conn
	left atomic.Int64
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.left.Add(-int64(len(p))) < 0 {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func leftovers(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, ".privcloud-upload.*"))
	return m
}

func TestUploadConnectionKilledMidway(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	src, sum := randomFile(t, e.dir, 64<<20)
	remoteDir := filepath.Join(e.dir, "remote")

	// Every connection dies after 16 MB: the upload fails, the destination never appears and the
	// temporary file is cleaned up on the host.
	d := e.dialer(false)
	d.dialTCP = func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		cc := &cutConn{Conn: conn}
		cc.left.Store(16 << 20)
		return cc, nil
	}
	c := connect(t, d, e.host(s, "root"))
	dst := filepath.Join(remoteDir, "payload")
	if _, err := c.Upload(context.Background(), LocalFile(src), dst, 0o644); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("want ErrConnectionLost, got %v", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a partial upload reached the destination: %v", err)
	}
	waitFor(t, 20*time.Second, "the temporary upload file to be removed", func() bool { return len(leftovers(remoteDir)) == 0 })

	// Only the first connection dies: Upload reconnects and completes on its own.
	var n atomic.Int32
	d = e.dialer(false)
	d.dialTCP = func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil || n.Add(1) > 1 {
			return conn, err
		}
		cc := &cutConn{Conn: conn}
		cc.left.Store(16 << 20)
		return cc, nil
	}
	c = connect(t, d, e.host(s, "root"))
	if _, err := c.Upload(context.Background(), LocalFile(src), dst, 0o644); err != nil {
		t.Fatalf("retry after reconnect failed: %v", err)
	}
	if got := remoteSHA(t, c, dst); got != sum {
		t.Fatalf("sha256 after retry %s, want %s", got, sum)
	}
	waitFor(t, 20*time.Second, "no temporary upload file", func() bool { return len(leftovers(remoteDir)) == 0 })
}

func TestBastionChain(t *testing.T) {
	e := newEnv(t)
	jump := e.server(testsshd.Options{})
	closed := e.server(testsshd.Options{NoForwarding: true})
	target := e.server(testsshd.Options{})
	e.trust(jump.KnownHostsLine(jump.HostKey), closed.KnownHostsLine(closed.HostKey), target.KnownHostsLine(target.HostKey))

	h := e.host(target, "root")
	h.Bastions = []api.Bastion{{Address: "127.0.0.1", Port: jump.Port, User: "root", SSHKeyPath: e.keyPath}}
	c := connect(t, e.dialer(false), h)
	if res, err := c.Run(context.Background(), "echo through"); err != nil || string(res.Stdout) != "through\n" {
		t.Fatalf("through bastion: %q %v", res.Stdout, err)
	}
	if !strings.Contains(jump.Log(), "root") {
		t.Errorf("the bastion saw no login")
	}
	// A bastion that forbids forwarding proves the connection really goes through the chain.
	h.Bastions = []api.Bastion{{Address: "127.0.0.1", Port: closed.Port, User: "root", SSHKeyPath: e.keyPath}}
	if _, err := e.dialer(false).Connect(context.Background(), h); err == nil || !strings.Contains(err.Error(), "bastion before it could not open") {
		t.Fatalf("a bastion without forwarding must fail the chain, got %v", err)
	}
	// The host key of the far end is checked too, through the tunnel.
	other, _ := testsshd.NewUserKey("")
	h.Bastions = []api.Bastion{{Address: "127.0.0.1", Port: jump.Port, User: "root", SSHKeyPath: e.keyPath}}
	h.HostKey = string(xssh.MarshalAuthorizedKey(other.PublicKey()))
	if _, err := e.dialer(false).Connect(context.Background(), h); hostKeyProblem(err) != HostKeyNotOnPin {
		t.Fatalf("want the target's key checked through the bastion, got %v", err)
	}
}

func TestDialThroughConnection(t *testing.T) {
	e, c := rootClient(t)
	sock := filepath.Join(e.dir, "echo.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(conn, conn); conn.Close() }()
		}
	}()
	conn, err := c.Dial(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || !bytes.Equal(buf, []byte("ping")) {
		t.Fatalf("unix socket echo through SSH: %q %v", buf, err)
	}
}

func TestFiftyHosts(t *testing.T) {
	e := newEnv(t)
	var servers []*testsshd.Server
	for range 50 {
		s := e.server(testsshd.Options{})
		e.trust(s.KnownHostsLine(s.HostKey))
		servers = append(servers, s)
	}
	d := e.dialer(false)
	start := time.Now()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.Connect(context.Background(), e.host(s, "root"))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if res, err := c.Run(context.Background(), "echo $SSH_CONNECTION"); err == nil && bytes.Contains(res.Stdout, []byte(fmt.Sprint(s.Port))) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 50 {
		t.Fatalf("%d of 50 hosts answered", ok.Load())
	}
	t.Logf("50 hosts connected and ran a command in %s", time.Since(start))
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestAgentOffersOnlyTheConfiguredKey(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	sock := filepath.Join(e.dir, "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
	waitFor(t, 10*time.Second, "ssh-agent's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	// The agent holds five other keys before ours: offering them all would exhaust sshd's MaxAuthTries (6).
	env := append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	for i := range 5 {
		p := filepath.Join(e.dir, fmt.Sprintf("decoy%d", i))
		if _, err := testsshd.NewUserKey(p); err != nil {
			t.Fatal(err)
		}
		add := exec.Command("ssh-add", p)
		add.Env = env
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v %s", err, out)
		}
	}
	add := exec.Command("ssh-add", e.keyPath)
	add.Env = env
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	// the private key leaves the disk; its .pub names which agent identity to use
	os.WriteFile(e.keyPath+".pub", xssh.MarshalAuthorizedKey(e.key.PublicKey()), 0o644)
	os.Remove(e.keyPath)
	d := e.dialer(false)
	d.Credentials.Getenv = func(k string) string {
		if k == "SSH_AUTH_SOCK" {
			return sock
		}
		return ""
	}
	c := connect(t, d, e.host(s, "root"))
	if _, err := c.Run(context.Background(), "true"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(s.Log(), "Failed publickey"); n != 0 {
		t.Errorf("%d other agent keys were offered to the host", n)
	}
}

func TestPasswordLogin(t *testing.T) {
	e, s := userServer(t, testsshd.Options{Password: "Pa55-word"})
	h := e.host(s, "privtest")
	h.SSHKeyPath = ""
	d := e.dialer(false)
	d.Credentials.Password = "Pa55-word"
	d.SudoPassword = "Pa55-word"
	c := connect(t, d, h)
	if res, err := c.Run(context.Background(), "id -un"); err != nil || string(res.Stdout) != "root\n" {
		t.Fatalf("password login then sudo: %q %v", res.Stdout, err)
	}
	d.Credentials.Password = "wrong"
	if _, err := d.Connect(context.Background(), h); err == nil {
		t.Fatal("a wrong password must be refused")
	}
}

func TestStatesInOneCommand(t *testing.T) {
	e, c := rootClient(t)
	ctx := context.Background()
	a, b := filepath.Join(e.dir, "a b", "x"), filepath.Join(e.dir, "it's", "y")
	for _, p := range []string{a, b} {
		if _, err := c.Upload(ctx, Bytes("content of "+p), p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	states, err := States(ctx, c, []string{a, b, filepath.Join(e.dir, "absent")})
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("content of " + a))
	if len(states) != 2 || states[a].SHA256 != hex.EncodeToString(want[:]) || states[a].Mode != "640" || states[b].Owner != "root:root" {
		t.Errorf("states = %+v", states)
	}

	// a file written by someone else has no hash record: it is hashed in a second command, and recorded, so
	// the next check is one command again; a folder has no state
	h := &countingHost{Client: c}
	other := filepath.Join(e.dir, "other")
	os.WriteFile(other, []byte("not privcloud's\n"), 0o644)
	for round, wantRuns := range []int{2, 1} {
		h.runs = 0
		states, err := States(ctx, h, []string{a, other, e.dir})
		sum := sha256.Sum256([]byte("not privcloud's\n"))
		if err != nil || len(states) != 2 || states[other].SHA256 != hex.EncodeToString(sum[:]) || states[a].SHA256 != hex.EncodeToString(want[:]) || h.runs != wantRuns {
			t.Errorf("round %d: states %+v in %d commands (want %d), %v", round, states, h.runs, wantRuns, err)
		}
	}
}

// countingHost counts the commands and uploads that reach a real host.
type countingHost struct {
	*Client
	runs, uploads int
}

func (h *countingHost) Run(ctx context.Context, cmd string, opts ...RunOption) (Result, error) {
	h.runs++
	return h.Client.Run(ctx, cmd, opts...)
}

func (h *countingHost) Upload(ctx context.Context, content Content, dst string, mode fs.FileMode, opts ...FileOption) (bool, error) {
	h.uploads++
	return h.Client.Upload(ctx, content, dst, mode, opts...)
}

// UploadAll reads the files' states in one command and sends only those that differ: in content, mode or
// owner; files already in place cost that one command.
func TestUploadAllSendsOnlyWhatDiffers(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	h := &countingHost{Client: connect(t, e.dialer(false), e.host(s, "root"))}
	dir := filepath.Join(e.dir, "remote")
	puts := []Put{
		{Content: Bytes([]byte("a\n")), Dst: filepath.Join(dir, "a"), Mode: 0o644, Owner: "root:root"},
		{Content: Bytes([]byte("b\n")), Dst: filepath.Join(dir, "b"), Mode: 0o600, Owner: "root:root"},
		{Content: Bytes([]byte("c\n")), Dst: filepath.Join(dir, "c"), Mode: 0o644},
	}
	ctx := context.Background()
	if changed, err := UploadAll(ctx, h, puts); err != nil || len(changed) != 3 || h.uploads != 3 {
		t.Fatalf("first upload: changed %v, %d uploads, %v", changed, h.uploads, err)
	}
	h.runs, h.uploads = 0, 0
	if changed, err := UploadAll(ctx, h, puts); err != nil || len(changed) != 0 || h.runs != 1 || h.uploads != 0 {
		t.Errorf("files in place: changed %v, %d commands, %d uploads, %v; want one command and nothing sent", changed, h.runs, h.uploads, err)
	}
	os.WriteFile(filepath.Join(dir, "b"), []byte("edited\n"), 0o600)
	os.Chmod(filepath.Join(dir, "c"), 0o666)
	h.runs, h.uploads = 0, 0
	changed, err := UploadAll(ctx, h, puts)
	if err != nil || !slices.Equal(changed, []string{puts[1].Dst, puts[2].Dst}) || h.uploads != 2 {
		t.Errorf("an edited file and a changed mode: changed %v, %d uploads, %v", changed, h.uploads, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "b")); string(data) != "b\n" {
		t.Errorf("b holds %q", data)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "c")); fi.Mode().Perm() != 0o644 {
		t.Errorf("c has mode %o", fi.Mode().Perm())
	}
}
