// Package testsshd runs real OpenSSH servers on loopback ports for integration tests and benchmarks. Each
// server has its own freshly generated host keys and configuration in a temporary folder; Stop ends it by PID.
// Nothing is installed or left running on the machine.
package testsshd

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Sshd is the OpenSSH server binary.
const Sshd = "/usr/sbin/sshd"

// Options shape one server.
type Options struct {
	// AuthorizedKeys are the client public keys accepted (for root and for User).
	AuthorizedKeys []ssh.PublicKey
	// RSAHostKey adds an RSA host key next to the ed25519 one, listed after it.
	RSAHostKey bool
	// ECDSAHostKey adds an ECDSA P-256 host key, listed before the ed25519 one so that sshd's own order
	// never favours ed25519.
	ECDSAHostKey bool
	// HostCA, when set, signs a host certificate for the ed25519 key, valid for 127.0.0.1.
	HostCA ssh.Signer
	// NoForwarding forbids TCP and unix-socket forwarding (a bastion that cannot be jumped through).
	NoForwarding bool
	// User, when set, exists only inside the server's own mount namespace, with Password and sudo rights
	// that ask for that password. The machine's /etc/passwd is never changed.
	User, Password string
	// SudoNoPassword makes User's sudo rule NOPASSWD: sudo never asks for Password.
	SudoNoPassword bool
	// StockShell gives root Debian's stock shell startup files (/etc/skel) inside the server's own mount
	// namespace, as on a freshly installed host, whatever this machine's root has in its own.
	StockShell bool
}

// Server is one running sshd.
type Server struct {
	Dir      string
	Port     int
	HostKey  ssh.PublicKey // the ed25519 host key
	RSAKey   ssh.PublicKey // the RSA host key, when asked for
	ECDSAKey ssh.PublicKey // the ECDSA host key, when asked for
	cmd      *exec.Cmd
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Start runs a new sshd in dir (created if needed) and waits until it answers with its banner.
func Start(dir string, o Options) (*Server, error) {
	if _, err := os.Stat(Sshd); err != nil {
		return nil, fmt.Errorf("%s not found: install openssh-server (.ci/run does)", Sshd)
	}
	// sshd's privilege-separation directory; the package creates it when its service starts.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if o.User != "" {
		// the user's sshd process reads authorized_keys from here as that user; the keys stay 0600
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}
	s := &Server{Dir: dir}
	hostKeys, err := s.writeHostKeys(o)
	if err != nil {
		return nil, err
	}
	conf := append([]string{"ListenAddress 127.0.0.1"}, hostKeys...)
	conf = append(conf,
		"PidFile "+filepath.Join(dir, "sshd.pid"), "AuthorizedKeysFile "+filepath.Join(dir, "authorized_keys"),
		"PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no", "KbdInteractiveAuthentication no",
		"PrintMotd no", "MaxStartups 200", "LogLevel VERBOSE", "Subsystem sftp internal-sftp",
	)
	if o.HostCA != nil {
		if err := writeHostCert(filepath.Join(dir, "host_ed25519-cert.pub"), s.HostKey, o.HostCA); err != nil {
			return nil, err
		}
		conf = append(conf, "HostCertificate "+filepath.Join(dir, "host_ed25519-cert.pub"))
	}
	if o.NoForwarding {
		conf = append(conf, "AllowTcpForwarding no", "AllowStreamLocalForwarding no", "DisableForwarding yes")
	}
	if o.Password != "" {
		conf = append(conf, "PasswordAuthentication yes")
	} else {
		conf = append(conf, "PasswordAuthentication no")
	}
	var auth strings.Builder
	for _, k := range o.AuthorizedKeys {
		auth.Write(ssh.MarshalAuthorizedKey(k))
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(auth.String()), 0o644); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		cfg := append([]string{"Port " + strconv.Itoa(port)}, conf...)
		if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(strings.Join(cfg, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
		err = s.start(o)
		if err == nil || attempt == 3 {
			return s, err
		}
	}
}

// writeHostKeys generates the server's host keys and returns their HostKey lines, in the order sshd_config
// lists them: ECDSA, ed25519, RSA.
func (s *Server) writeHostKeys(o Options) ([]string, error) {
	var lines []string
	var err error
	if o.ECDSAHostKey {
		if s.ECDSAKey, err = writeECDSA(filepath.Join(s.Dir, "host_ecdsa")); err != nil {
			return nil, err
		}
		lines = append(lines, "HostKey "+filepath.Join(s.Dir, "host_ecdsa"))
	}
	if s.HostKey, err = writeEd25519(filepath.Join(s.Dir, "host_ed25519")); err != nil {
		return nil, err
	}
	lines = append(lines, "HostKey "+filepath.Join(s.Dir, "host_ed25519"))
	if o.RSAHostKey {
		if s.RSAKey, err = writeRSA(filepath.Join(s.Dir, "host_rsa")); err != nil {
			return nil, err
		}
		lines = append(lines, "HostKey "+filepath.Join(s.Dir, "host_rsa"))
	}
	return lines, nil
}

func (s *Server) start(o Options) error {
	log := filepath.Join(s.Dir, "sshd.log")
	args := []string{"-D", "-f", filepath.Join(s.Dir, "sshd_config"), "-E", log}
	var mounts []string
	if o.User != "" {
		m, err := s.userFiles(o)
		if err != nil {
			return err
		}
		mounts = append(mounts, m...)
	}
	if o.StockShell {
		for _, f := range []string{".bashrc", ".profile"} {
			if _, err := os.Stat("/root/" + f); err == nil {
				mounts = append(mounts, "/etc/skel/"+f, "/root/"+f)
			}
		}
	}
	var cmd *exec.Cmd
	if len(mounts) > 0 {
		var script strings.Builder
		script.WriteString("set -e\n")
		for i := 0; i < len(mounts); i += 2 {
			fmt.Fprintf(&script, "mount --bind %s %s\n", mounts[i], mounts[i+1])
		}
		script.WriteString("exec \"$@\"\n")
		cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script.String(), "sshd", Sshd}, args...)...)
	} else {
		cmd = exec.Command(Sshd, args...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test process
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			logData, _ := os.ReadFile(log)
			return fmt.Errorf("sshd exited at start (%v): %s", err, logData)
		default:
		}
		if banner(s.Addr()) {
			go func() { <-exited }()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return errors.New("sshd did not answer within 15s")
}

// userFiles writes passwd, group, shadow and sudoers files holding user and returns (source, target) pairs to
// bind-mount over /etc inside sshd's private mount namespace.
func (s *Server) userFiles(o Options) ([]string, error) {
	user := o.User
	hash, err := exec.Command("openssl", "passwd", "-6", o.Password).Output()
	if err != nil {
		return nil, fmt.Errorf("openssl passwd: %w", err)
	}
	home := filepath.Join(s.Dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, f := range []string{"passwd", "group", "shadow"} {
		data, err := os.ReadFile("/etc/" + f)
		if err != nil {
			return nil, err
		}
		files[f] = string(data)
	}
	files["passwd"] += fmt.Sprintf("%s:x:4242:4242::%s:/bin/sh\n", user, home)
	files["group"] += fmt.Sprintf("%s:x:4242:\n", user)
	files["shadow"] += fmt.Sprintf("%s:%s:19000:0:99999:7:::\n", user, strings.TrimSpace(string(hash)))
	files["sudoers"] = "Defaults !lecture\nroot ALL=(ALL:ALL) ALL\n" + sudoRule(user, o.SudoNoPassword)
	var mounts []string
	for name, content := range files {
		p := filepath.Join(s.Dir, "etc-"+name)
		mode := os.FileMode(0o644)
		if name == "shadow" {
			mode = 0o640
		}
		if name == "sudoers" {
			mode = 0o440
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, mode); err != nil {
			return nil, err
		}
		mounts = append(mounts, p, "/etc/"+name)
	}
	return mounts, nil
}

func sudoRule(user string, noPassword bool) string {
	if noPassword {
		return user + " ALL=(ALL:ALL) NOPASSWD: ALL\n"
	}
	return user + " ALL=(ALL:ALL) ALL\n"
}

// Stop ends the server and every process it started (per-connection sshd processes call setsid, so they
// leave its process group: they are found by parent PID), by PID with SIGKILL, and waits until all are gone.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pids := append(descendants(s.cmd.Process.Pid), s.cmd.Process.Pid)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && !zombie(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// descendants lists the processes below pid, deepest last, from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid := parentOf(child); ppid > 0 {
			children[ppid] = append(children[ppid], child)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// parentOf reads the parent PID from /proc/PID/stat (the field after the parenthesised command name).
func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// zombie reports a process that has exited and only waits to be reaped by its parent.
func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(data), ')')
	return i >= 0 && len(data) > i+2 && data[i+2] == 'Z'
}

// Log returns what the server logged.
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "sshd.log"))
	return string(data)
}

// KnownHostsLine returns a known_hosts line for the server's key k.
func (s *Server) KnownHostsLine(k ssh.PublicKey) string {
	return fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
}

func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// NewUserKey returns a fresh ed25519 client key, written unencrypted (0600) to path when path is not empty.
func NewUserKey(path string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if path != "" {
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return ssh.NewSignerFromKey(priv)
}

func writeEd25519(path string) (ssh.PublicKey, error) {
	s, err := NewUserKey(path)
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}

func writeRSA(path string) (ssh.PublicKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return writeKey(path, key)
}

func writeECDSA(path string) (ssh.PublicKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return writeKey(path, key)
}

// writeKey writes key unencrypted (0600) to path in OpenSSH's format and returns its public half.
func writeKey(path string, key crypto.Signer) (ssh.PublicKey, error) {
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(key.Public())
}

func writeHostCert(path string, hostKey ssh.PublicKey, ca ssh.Signer) error {
	cert := &ssh.Certificate{
		Key: hostKey, CertType: ssh.HostCert, KeyId: "privcloud-test-host", ValidPrincipals: []string{"127.0.0.1"},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(24 * time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		return err
	}
	return os.WriteFile(path, ssh.MarshalAuthorizedKey(cert), 0o644)
}
