package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	xssh "golang.org/x/crypto/ssh"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/internal/testsshd"
	"github.com/privcloud/privcloud/ssh"
)

// Names of the lab's network pieces. The switch is a bridge inside its own namespace; the machine reaches it
// through a veth at GatewayIP.
const (
	switchNS   = namePrefix + "sw"
	uplinkLink = namePrefix + "up"
	recordName = "lab.json"
	// a routed lab's second segment and the router between the two
	routedSwitchNS = namePrefix + "sw2"
	routerNS       = namePrefix + "rt"
)

func hostNS(i int) string   { return fmt.Sprintf("%sh%d", namePrefix, i) }
func hostPort(i int) string { return fmt.Sprintf("%sh%d", namePrefix, i) } // the host's port on the switch

// Lab is a set of hosts and the files describing them (cluster.yaml, keys, known_hosts) in Dir.
type Lab struct {
	// Dir holds the lab's record and the files users need: .lab in the checkout for `make lab`.
	Dir string
	// Runtime holds the hosts' overlays and containerd folders; it must be on ext4 (not overlay or tmpfs).
	Runtime string
	// Log receives progress and tool output.
	Log io.Writer
	// Bundle, when set, is the bundle the lab's cluster.yaml installs from.
	Bundle string
	// ControlPlanes are the numbers of the hosts cluster.yaml gives the control-plane and etcd roles; the
	// others are workers. Empty: host 1.
	ControlPlanes []int
	// Routed are the numbers of the hosts on a second subnet (RoutedSubnet), a layer-3 hop away from the
	// others through a router the lab runs in its own namespace. Empty: one segment.
	Routed []int

	rec Record
}

// Record is what a lab created, written before each resource is made so Down can undo a crashed run.
type Record struct {
	Image   string       `json:"image"`
	Network bool         `json:"network"`
	Routed  []int        `json:"routed,omitempty"`
	Hosts   []HostRecord `json:"hosts"`
}

// HostRecord is one host's resources.
type HostRecord struct {
	Index     int      `json:"index"`
	Dir       string   `json:"dir"`
	Mount     string   `json:"mount"`
	Cgroups   []string `json:"cgroups"`
	PID       int      `json:"pid"`
	MachineID string   `json:"machineID"`
}

// Open loads the lab's record, if any.
func Open(dir, runtime string, log io.Writer) (*Lab, error) {
	l := &Lab{Dir: dir, Runtime: runtime, Log: log}
	data, err := os.ReadFile(filepath.Join(dir, recordName))
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &l.rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordName), err)
	}
	return l, nil
}

func (l *Lab) save() error {
	data, err := json.MarshalIndent(l.rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(l.Dir, recordName), data, 0o600)
}

// Hosts returns the number of hosts the lab has.
func (l *Lab) Hosts() int { return len(l.rec.Hosts) }

// Up boots n hosts from image and waits until each answers SSH with its known host key. It writes the user
// key, known_hosts and cluster.yaml into Dir. A lab that is already up is refused.
func (l *Lab) Up(ctx context.Context, image string, n int) error {
	if n < 1 || n > maxHosts {
		return fmt.Errorf("a lab has 1 to %d hosts, not %d", maxHosts, n)
	}
	if len(l.rec.Hosts) > 0 || l.rec.Network {
		return fmt.Errorf("a lab is already up (record %s): take it down first", filepath.Join(l.Dir, recordName))
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(switchNS)) {
		return fmt.Errorf("network namespace %s exists: another lab is up on this machine", switchNS)
	}
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return err
	}
	l.rec.Image = image
	l.rec.Routed = l.Routed
	userKey, err := l.writeUserKey()
	if err != nil {
		return err
	}
	if err := l.netUp(); err != nil {
		return err
	}
	var known strings.Builder
	for i := 1; i <= n; i++ {
		hostKey, err := l.hostUp(i, image, userKey)
		if err != nil {
			return fmt.Errorf("host h%d: %w", i, err)
		}
		fmt.Fprintf(&known, "%s %s\n", l.IP(i), strings.TrimSpace(string(xssh.MarshalAuthorizedKey(hostKey))))
	}
	if err := os.WriteFile(l.KnownHosts(), []byte(known.String()), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(l.ClusterConfig(), []byte(l.clusterYAML(n)), 0o600); err != nil {
		return err
	}
	return l.WaitSSH(ctx, 2*time.Minute)
}

// KeyPath, KnownHosts and ClusterConfig are the files the lab writes for privcloud.
func (l *Lab) KeyPath() string       { return filepath.Join(l.Dir, "id_ed25519") }
func (l *Lab) KnownHosts() string    { return filepath.Join(l.Dir, "known_hosts") }
func (l *Lab) ClusterConfig() string { return filepath.Join(l.Dir, "cluster.yaml") }

func (l *Lab) writeUserKey() (xssh.PublicKey, error) {
	if data, err := os.ReadFile(l.KeyPath()); err == nil {
		s, err := xssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.KeyPath(), err)
		}
		return s.PublicKey(), nil
	}
	s, err := testsshd.NewUserKey(l.KeyPath())
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), nil
}

// clusterYAML describes the lab for privcloud: h1 (or ControlPlanes) runs the control plane and etcd, the others are workers, with the
// settings hosts that are containers on a cgroup v1 machine need.
func (l *Lab) clusterYAML(n int) string {
	var b strings.Builder
	b.WriteString("# Written by the privcloud lab for its hosts; `make lab-down` removes it.\n")
	b.WriteString("apiVersion: privcloud.io/v1alpha1\nkind: Cluster\nmetadata:\n  name: lab\nspec:\n  stateDir: state\n")
	// the newest version the lab bundle can build (the module proxy refuses the source of v1.37.2)
	b.WriteString("  kubernetesVersion: v1.37.1\n")
	if l.Bundle != "" {
		fmt.Fprintf(&b, "  bundle:\n    path: %s\n", l.Bundle)
	}
	b.WriteString("  hosts:\n")
	// a lab of control planes alone makes them workers too: tainted control planes would leave the add-ons
	// nowhere to run
	cpOnly := len(l.ControlPlanes) >= n || n == 1
	for i := 1; i <= n; i++ {
		roles := "[worker]"
		if i == 1 && len(l.ControlPlanes) == 0 || slices.Contains(l.ControlPlanes, i) {
			roles = "[control-plane, etcd]"
			if cpOnly {
				roles = "[control-plane, etcd, worker]"
			}
		}
		fmt.Fprintf(&b, "  - name: h%d\n    address: %s\n    sshKeyPath: id_ed25519\n    roles: %s\n", i, l.IP(i), roles)
	}
	b.WriteString(`  ssh:
    knownHostsFiles: [known_hosts]
    connectTimeout: 5s
  containerd:
    kata:
      enabled: true
    # the hosts are containers: no CAP_SYS_RESOURCE to lower oom_score_adj
    restrictOOMScoreAdj: true
  kubelet:
    cgroupDriver: cgroupfs
    failCgroupV1: false
    # the hosts' disk is the machine's, filled by its build caches too: the kubelet's default thresholds
    # (imagefs under 15% free) would evict pods for what the machine stores
    evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
    # and its image garbage collection (from 85% used) would delete the test images pods are started from
    extraArgs: {image-gc-high-threshold: "100", image-gc-low-threshold: "99"}
  kubeProxy:
    conntrack:
      maxPerCore: 0
  network:
    podCIDR: ` + PodCIDR + `
  addons:
    multus:
      networks:
      # a second pod network on the lab segment: macvlan on each host's eth0, each pod asks for its address
      - name: lab-macvlan
        type: macvlan
        master: eth0
        ipam: static
        addresses: [10.77.1.10/24, 10.77.1.11/24, 10.77.1.12/24]
`)
	return b.String()
}

// KeepHosts is a lab cluster.yaml (config) with only the host entries keep accepts, by host name: a cluster of
// some of the lab's hosts, the others left for a later join (or for a side-by-side benchmark).
func KeepHosts(config string, keep func(name string) bool) string {
	var out []string
	skipping := false
	for _, line := range strings.SplitAfter(config, "\n") {
		if name, ok := strings.CutPrefix(line, "  - name: "); ok {
			skipping = !keep(strings.TrimSpace(name))
		} else if !strings.HasPrefix(line, "    ") {
			skipping = false
		}
		if !skipping {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// Cluster loads the lab's cluster.yaml.
func (l *Lab) Cluster() (*api.Cluster, error) { return api.Load(l.ClusterConfig()) }

// WaitSSH waits until every host accepts an SSH connection with its known host key.
func (l *Lab) WaitSSH(ctx context.Context, limit time.Duration) error {
	c, d, err := l.dialer(2 * time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for _, h := range c.Spec.Hosts {
		for {
			client, err := d.Connect(ctx, h)
			if err == nil {
				client.Close()
				break
			}
			var hk *ssh.HostKeyError
			if errors.As(err, &hk) {
				return err // a wrong key will not fix itself
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not answer SSH within %s: %w (console: %s)", h.Name, limit, err, l.consolePath(h.Name))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// dialer reaches the lab's hosts with their known host keys: one attempt per call, the caller retries.
func (l *Lab) dialer(connectTimeout time.Duration) (*api.Cluster, *ssh.Dialer, error) {
	c, err := l.Cluster()
	if err != nil {
		return nil, nil, err
	}
	d, err := ssh.NewDialer(c, ssh.Environment{Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, nil, err
	}
	d.Attempts, d.ConnectTimeout = 1, connectTimeout
	return c, d, nil
}

func (l *Lab) consolePath(name string) string { return filepath.Join(l.Runtime, name, "console.log") }

// IP is the address of host i: on the routed subnet for the hosts the lab routes, else on the first.
func (l *Lab) IP(i int) string {
	if l.routed(i) {
		return routedIP(i)
	}
	return HostIP(i)
}

func (l *Lab) routed(i int) bool {
	return slices.Contains(l.rec.Routed, i) || slices.Contains(l.Routed, i)
}

// switchOf is the namespace of the switch host i is plugged into.
func (l *Lab) switchOf(i int) string {
	if l.routed(i) {
		return routedSwitchNS
	}
	return switchNS
}

// netUp makes the switch namespace with its bridge and the machine's uplink; a routed lab also gets a second
// switch and a router between the two. The router forwards in its own namespace; the machine only gains a
// route to the routed subnet on the lab's own uplink, which goes with the link.
func (l *Lab) netUp() error {
	l.rec.Network = true
	if err := l.save(); err != nil {
		return err
	}
	cmds := [][]string{
		{"netns", "add", switchNS},
		{"-n", switchNS, "link", "set", "lo", "up"},
		{"-n", switchNS, "link", "add", "br0", "type", "bridge"},
		{"-n", switchNS, "link", "set", "br0", "up"},
		{"link", "add", uplinkLink, "type", "veth", "peer", "name", "up0", "netns", switchNS},
		{"-n", switchNS, "link", "set", "up0", "master", "br0", "up"},
		{"addr", "add", GatewayIP + "/24", "dev", uplinkLink},
		{"link", "set", uplinkLink, "up"},
	}
	if len(l.rec.Routed) > 0 {
		cmds = append(cmds, [][]string{
			{"netns", "add", routedSwitchNS},
			{"-n", routedSwitchNS, "link", "set", "lo", "up"},
			{"-n", routedSwitchNS, "link", "add", "br0", "type", "bridge"},
			{"-n", routedSwitchNS, "link", "set", "br0", "up"},
			{"netns", "add", routerNS},
			{"-n", routerNS, "link", "set", "lo", "up"},
			{"-n", routerNS, "link", "add", "eth0", "type", "veth", "peer", "name", "rt0", "netns", switchNS},
			{"-n", switchNS, "link", "set", "rt0", "master", "br0", "up"},
			{"-n", routerNS, "link", "add", "eth1", "type", "veth", "peer", "name", "rt0", "netns", routedSwitchNS},
			{"-n", routedSwitchNS, "link", "set", "rt0", "master", "br0", "up"},
			{"-n", routerNS, "addr", "add", routerIP + "/24", "dev", "eth0"},
			{"-n", routerNS, "addr", "add", routedGW + "/24", "dev", "eth1"},
			{"-n", routerNS, "link", "set", "eth0", "up"},
			{"-n", routerNS, "link", "set", "eth1", "up"},
			{"-n", routerNS, "route", "add", "default", "via", GatewayIP},
			{"route", "add", RoutedSubnet, "via", routerIP, "dev", uplinkLink},
		}...)
	}
	if err := l.ip(cmds); err != nil {
		return err
	}
	if len(l.rec.Routed) > 0 {
		// forwarding in the router's own namespace (a namespace's sysctl, never the machine's)
		return run(l.Log, "ip", "netns", "exec", routerNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	return nil
}

func (l *Lab) ip(cmds [][]string) error {
	for _, args := range cmds {
		if err := run(l.Log, "ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// hostUp boots host i: its network namespace and switch port, an overlay of the image with its own SSH host
// key and the lab user's key, a cgroup in every hierarchy, and systemd-nspawn booting its systemd.
func (l *Lab) hostUp(i int, image string, userKey xssh.PublicKey) (xssh.PublicKey, error) {
	name := fmt.Sprintf("h%d", i)
	dir := filepath.Join(l.Runtime, name)
	hr := HostRecord{Index: i, Dir: dir, Mount: filepath.Join(dir, "root")}
	l.rec.Hosts = append(l.rec.Hosts, hr)
	rec := &l.rec.Hosts[len(l.rec.Hosts)-1]
	if err := l.save(); err != nil {
		return nil, err
	}
	for _, d := range []string{"upper", "work", "root", "containerd", "upper/etc/ssh", "upper/root/.ssh"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	// the overlay's folders take the upper folders' modes: a host's / and /etc are 0755, or services running as
	// their own user (etcd) cannot even enter them
	for _, d := range []string{"upper", "upper/etc", "upper/etc/ssh"} {
		if err := os.Chmod(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// a fresh host key for this host, known before it boots: host keys are verified from the first connection
	hostKey, err := writeHostKey(filepath.Join(dir, "upper/etc/ssh/ssh_host_ed25519_key"))
	if err != nil {
		return nil, err
	}
	// every host its own machine id, as real machines have (nspawn would give all of them the same one)
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	rec.MachineID = hex.EncodeToString(id)
	files := map[string][]byte{
		"upper/root/.ssh/authorized_keys": xssh.MarshalAuthorizedKey(userKey),
		"upper/etc/hostname":              []byte(name + "\n"),
		"upper/etc/machine-id":            []byte(rec.MachineID + "\n"),
	}
	for p, data := range files {
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o600); err != nil {
			return nil, err
		}
	}
	// every host's name at its address, routed or not (the image's list knows the first subnet only)
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for j := 1; j <= maxHosts; j++ {
		fmt.Fprintf(&hosts, "%s h%d\n", l.IP(j), j)
	}
	if err := os.WriteFile(filepath.Join(dir, "upper/etc/hosts"), []byte(hosts.String()), 0o644); err != nil {
		return nil, err
	}
	ns := hostNS(i)
	if err := l.ip([][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"link", "add", hostPort(i), "netns", l.switchOf(i), "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", l.switchOf(i), "link", "set", hostPort(i), "master", "br0", "up"},
		{"-n", ns, "addr", "add", l.IP(i) + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}); err != nil {
		return nil, err
	}
	routes := [][]string{{"-n", ns, "route", "add", "default", "via", GatewayIP}}
	switch {
	case l.routed(i):
		routes = [][]string{{"-n", ns, "route", "add", "default", "via", routedGW}}
	case len(l.rec.Routed) > 0:
		routes = append(routes, []string{"-n", ns, "route", "add", RoutedSubnet, "via", routerIP})
	}
	if err := l.ip(routes); err != nil {
		return nil, err
	}
	if err := run(l.Log, "mount", "-t", "overlay", "overlay", "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", image, filepath.Join(dir, "upper"), filepath.Join(dir, "work")), rec.Mount); err != nil {
		return nil, err
	}
	cgroups, err := hostCgroups("lab-" + name)
	rec.Cgroups = cgroups
	if serr := l.save(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	pid, err := l.boot(name, ns, rec)
	if err != nil {
		return nil, err
	}
	rec.PID = pid
	return hostKey, l.save()
}

// boot starts systemd-nspawn for a host inside its cgroups (no systemd on the machine makes a scope for it).
func (l *Lab) boot(name, ns string, rec *HostRecord) (int, error) {
	console, err := os.Create(filepath.Join(rec.Dir, "console.log"))
	if err != nil {
		return 0, err
	}
	defer console.Close()
	var script strings.Builder
	for _, d := range rec.Cgroups {
		fmt.Fprintf(&script, "echo $$ > %s/cgroup.procs\n", d)
	}
	script.WriteString(`exec "$@"`)
	args := []string{"-c", script.String(), "lab-host",
		"systemd-nspawn", "-q", "-D", rec.Mount, "-M", name, "--uuid=" + rec.MachineID, "-b", "--register=no", "--keep-unit",
		"--network-namespace-path=/run/netns/" + ns, "--capability=all",
		"--bind=" + filepath.Join(rec.Dir, "containerd") + ":/var/lib/containerd", "--bind=/dev/kmsg",
		"--console=read-only", "--resolv-conf=off"}
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(),
		"SYSTEMD_SECCOMP=0",                       // nspawn's filter blocks keyctl, which runc needs
		"SYSTEMD_NSPAWN_API_VFS_WRITABLE=network", // /proc/sys/net writable: per-namespace, for CNI and kube-proxy
	)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = console, console, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // the host outlives this process; Down ends it
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go cmd.Wait() // reap it when it ends while we still run
	return cmd.Process.Pid, nil
}

// hostCgroups makes a cgroup named name under this process's own cgroup in every mounted hierarchy.
func hostCgroups(name string) ([]string, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]string{} // controller key -> this process's path
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			paths[parts[1]] = parts[2]
		}
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		mount := filepath.Join("/sys/fs/cgroup", e.Name())
		if exec.Command("mountpoint", "-q", mount).Run() != nil {
			continue
		}
		k := e.Name()
		switch k {
		case "systemd":
			k = "name=systemd"
		case "unified":
			k = ""
		}
		cur, ok := paths[k]
		if !ok {
			cur = lookupCombined(paths, k)
		}
		d := filepath.Join(mount, cur, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return out, err
		}
		out = append(out, d)
		if e.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return out, err
				}
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return out, err
				}
			}
		}
	}
	return out, nil
}

// lookupCombined finds the path of a controller mounted together with others ("cpu,cpuacct").
func lookupCombined(paths map[string]string, k string) string {
	for ctrls, p := range paths {
		for _, c := range strings.Split(ctrls, ",") {
			if c == k {
				return p
			}
		}
	}
	return "/"
}

// writeHostKey writes a new ed25519 host key pair (OpenSSH format) and returns the public half.
func writeHostKey(path string) (xssh.PublicKey, error) {
	s, err := testsshd.NewUserKey(path)
	if err != nil {
		return nil, err
	}
	return s.PublicKey(), os.WriteFile(path+".pub", xssh.MarshalAuthorizedKey(s.PublicKey()), 0o644)
}

// Down ends every host (SIGKILL to its systemd ends its whole container at once), unmounts, removes the
// cgroups, namespaces and links, and the runtime files, following the record. It may be run again.
func (l *Lab) Down() error {
	var errs []error
	for i := len(l.rec.Hosts) - 1; i >= 0; i-- {
		h := l.rec.Hosts[i]
		errs = append(errs, l.hostDown(h))
	}
	if l.rec.Network {
		exec.Command("ip", "link", "del", uplinkLink).Run() // its route to the routed subnet goes with it
		for _, ns := range []string{routerNS, routedSwitchNS, switchNS} {
			if err := exec.Command("ip", "netns", "del", ns).Run(); err != nil && netnsExists(ns) {
				errs = append(errs, fmt.Errorf("ip netns del %s: %w", ns, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.rec = Record{}
	for _, f := range []string{recordName, "known_hosts", "cluster.yaml", "kubeconfig"} {
		os.Remove(filepath.Join(l.Dir, f))
	}
	os.RemoveAll(filepath.Join(l.Dir, "state"))
	return nil
}

func (l *Lab) hostDown(h HostRecord) error {
	if h.PID > 0 && alive(h.PID) {
		if init := childOf(h.PID); init > 0 {
			syscall.Kill(init, syscall.SIGKILL) // the container's PID 1: its whole PID namespace goes with it
		}
		deadline := time.Now().Add(15 * time.Second)
		for alive(h.PID) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(h.PID) {
			syscall.Kill(h.PID, syscall.SIGKILL)
		}
	}
	var errs []error
	if h.Mount != "" && exec.Command("mountpoint", "-q", h.Mount).Run() == nil {
		if err := run(l.Log, "umount", h.Mount); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range h.Cgroups {
		if err := removeCgroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	if ns := hostNS(h.Index); netnsExists(ns) {
		if err := run(l.Log, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(h.Dir)
}

// removeCgroup removes a cgroup and the ones under it, deepest first, once their processes are gone.
func removeCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cgroup %s: %w", dirs[i], err)
			}
			time.Sleep(50 * time.Millisecond) // its last processes are still exiting
		}
	}
	return nil
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return !(i >= 0 && len(data) > i+2 && data[i+2] == 'Z')
}

// childOf returns a child of pid (nspawn's only child is the container's init).
func childOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0
	}
	child, _ := strconv.Atoi(fields[0])
	return child
}

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// Kill ends host i at once, as a power cut would, and returns once every process of it is gone.
func (l *Lab) Kill(i int) error {
	for _, h := range l.rec.Hosts {
		if h.Index != i {
			continue
		}
		init := childOf(h.PID)
		if init <= 0 {
			return fmt.Errorf("h%d is not running", i)
		}
		if err := syscall.Kill(init, syscall.SIGKILL); err != nil {
			return err
		}
		// the kernel tears the PID namespace down asynchronously; nspawn exits when it is gone
		deadline := time.Now().Add(15 * time.Second)
		for alive(h.PID) {
			if time.Now().After(deadline) {
				return fmt.Errorf("h%d: still running 15s after SIGKILL", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
	return fmt.Errorf("the lab has no host h%d", i)
}

// Reboot ends host i as a power cut would and boots it again from its own disk (its overlay, containerd's
// folder), as a machine coming back does: whatever was enabled starts again, whatever was running is gone.
func (l *Lab) Reboot(i int) error {
	if err := l.Kill(i); err != nil {
		return err
	}
	return l.Start(i)
}

// Start boots host i, stopped by Kill, from its own disk.
func (l *Lab) Start(i int) error {
	for j := range l.rec.Hosts {
		rec := &l.rec.Hosts[j]
		if rec.Index != i {
			continue
		}
		if alive(rec.PID) {
			return fmt.Errorf("h%d is running", i)
		}
		pid, err := l.boot(fmt.Sprintf("h%d", i), hostNS(i), rec)
		if err != nil {
			return err
		}
		rec.PID = pid
		return l.save()
	}
	return fmt.Errorf("the lab has no host h%d", i)
}

// Connect opens an SSH connection to the named host, its host key verified, for tests that reach a host's
// loopback services through it.
func (l *Lab) Connect(ctx context.Context, name string) (*ssh.Client, error) {
	c, d, err := l.dialer(5 * time.Second)
	if err != nil {
		return nil, err
	}
	for _, h := range c.Spec.Hosts {
		if h.Name == name {
			return d.Connect(ctx, h)
		}
	}
	return nil, fmt.Errorf("the lab has no host %s", name)
}

// Cut takes host i off the network (its switch port down); Restore puts it back.
func (l *Lab) Cut(i int) error {
	return run(l.Log, "ip", "-n", l.switchOf(i), "link", "set", hostPort(i), "down")
}
func (l *Lab) Restore(i int) error {
	return run(l.Log, "ip", "-n", l.switchOf(i), "link", "set", hostPort(i), "up")
}

// Status describes each host: its process and whether its switch port is up.
func (l *Lab) Status() string {
	if len(l.rec.Hosts) == 0 {
		return "no lab is up\n"
	}
	var b strings.Builder
	for _, h := range l.rec.Hosts {
		state := "stopped"
		if h.PID > 0 && alive(h.PID) {
			state = "running"
		}
		link := "connected"
		if out, err := exec.Command("ip", "-n", l.switchOf(h.Index), "-o", "link", "show", hostPort(h.Index)).Output(); err != nil || !bytes.Contains(out, []byte("state UP")) {
			link = "cut off"
		}
		fmt.Fprintf(&b, "h%d  %-12s %-8s %s\n", h.Index, l.IP(h.Index), state, link)
	}
	return b.String()
}

// Logs collects what each host says about itself (its journal, read over SSH, and its console), for tests
// that fail.
func (l *Lab) Logs(ctx context.Context) string {
	var b strings.Builder
	c, d, err := l.dialer(3 * time.Second)
	if err != nil {
		return err.Error()
	}
	clusterShown := false
	for _, h := range c.Spec.Hosts {
		fmt.Fprintf(&b, "==== %s journal\n", h.Name)
		if client, err := d.Connect(ctx, h); err != nil {
			fmt.Fprintf(&b, "(unreachable: %v)\n", err)
		} else {
			res, _ := client.Run(ctx, "journalctl -b --no-pager -n 150 2>&1; systemctl --failed --no-pager 2>&1")
			b.Write(res.Stdout)
			// the cluster's own view (pods stuck and why), once, from the first control plane that answers
			if !clusterShown && h.HasRole(api.RoleControlPlane) {
				res, err := client.Run(ctx, clusterView)
				if err == nil {
					fmt.Fprintf(&b, "==== the cluster, seen from %s\n", h.Name)
					b.Write(res.Stdout)
					clusterShown = true
				}
			}
			client.Close()
		}
		console, _ := os.ReadFile(l.consolePath(h.Name))
		fmt.Fprintf(&b, "==== %s console (last 3000 bytes)\n%s\n", h.Name, tail(console, 3000))
	}
	return b.String()
}

// clusterView is what the API says about nodes, pods not running, and recent events.
const clusterView = `k="timeout 10 kubectl --kubeconfig /etc/kubernetes/admin.conf"
$k get nodes -o wide || exit 1; $k get pods -A -o wide | grep -v ' Running '; $k get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 60`

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Leftovers lists what a lab left on the machine: namespaces and links of its naming, mounts under runtime,
// host cgroups, running nspawn processes. Empty after a clean Down.
func Leftovers(runtime string) []string {
	var out []string
	if data, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], namePrefix) {
				out = append(out, "network namespace "+f[0])
			}
		}
	}
	if exec.Command("ip", "link", "show", uplinkLink).Run() == nil {
		out = append(out, "link "+uplinkLink)
	}
	if mounts, err := os.ReadFile("/proc/mounts"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], runtime) {
				out = append(out, "mount "+f[1])
			}
		}
	}
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), "lab-h") {
			out = append(out, "cgroup "+p)
			return filepath.SkipDir
		}
		return nil
	})
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmd, []byte(runtime)) && alive(pid) {
			out = append(out, fmt.Sprintf("process %d %s", pid, bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
	}
	return out
}

// Memory is one host's memory use, from its cgroup: rss is anonymous memory of its processes, cache the page
// cache charged to it.
type Memory struct {
	Host       string
	RSS, Cache uint64
}

// MemoryUse reads each host's memory cgroup.
func (l *Lab) MemoryUse() ([]Memory, error) {
	var out []Memory
	for _, h := range l.rec.Hosts {
		m := Memory{Host: fmt.Sprintf("h%d", h.Index)}
		for _, d := range h.Cgroups {
			if !strings.HasPrefix(d, "/sys/fs/cgroup/memory/") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(d, "memory.stat"))
			if err != nil {
				return nil, err
			}
			for _, line := range strings.Split(string(data), "\n") {
				f := strings.Fields(line)
				if len(f) != 2 {
					continue
				}
				v, _ := strconv.ParseUint(f[1], 10, 64)
				switch f[0] {
				case "total_rss":
					m.RSS = v
				case "total_cache":
					m.Cache = v
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}
