// Package lab runs real SSH hosts on one machine for end-to-end tests and for `make lab`: systemd-nspawn
// containers booting their own systemd, each in its own network namespace on a private bridge
// (10.77.0.0/24), reached from the machine at 10.77.0.(10+N). It follows the tested recipe in
// shared/lab-recipe. Every resource is recorded before it is created, so Down cleans up even after a crash.
package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Suite and Packages make the base image: Debian minbase plus what a Kubernetes node and the lab need.
const (
	Suite  = "bookworm"
	Mirror = "http://deb.debian.org/debian"
)

// Packages installed into the image by debootstrap.
var Packages = []string{"systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "iputils-ping", "procps",
	"iptables", "ipset", "kmod", "ca-certificates", "less", "conntrack", "socat", "ethtool", "ebtables", "curl"}

// Network of the lab: hosts are .11 onwards, the machine's side of the bridge is .254.
const (
	Subnet      = "10.77.0.0/24"
	Network     = "10.77.0.0/16"  // every subnet of the lab, the routed one too
	PodCIDR     = "10.244.0.0/16" // the lab cluster's pods: routed between lab hosts only
	GatewayIP   = "10.77.0.254"
	hostIPBase  = 10
	maxHosts    = 20
	namePrefix  = "pcl-" // every namespace and link the lab makes starts with it
	imageFormat = "5"    // bump when the customisation below changes
)

// The routed subnet: hosts a lab puts there (Lab.Routed) reach the first subnet, and the machine, through the
// lab's router, which has an address on each.
const (
	RoutedSubnet = "10.77.2.0/24"
	routerIP     = "10.77.0.253" // the router on the first subnet
	routedGW     = "10.77.2.254" // the router on the routed subnet
)

// HostIP is the address of host i (1-based) on the first subnet; Lab.IP knows the hosts a lab routed.
func HostIP(i int) string { return fmt.Sprintf("10.77.0.%d", hostIPBase+i) }

// routedIP is the address of host i on the routed subnet.
func routedIP(i int) string { return fmt.Sprintf("10.77.2.%d", hostIPBase+i) }

// EnsureImage returns the lab image under cache, building it when missing: debootstrap once (cached on its
// own, keyed by suite and packages, as it is the slow part), then the lab customisation on a copy.
func EnsureImage(cache string, log io.Writer) (string, error) {
	base, err := ensureDebootstrap(cache, log)
	if err != nil {
		return "", err
	}
	image := filepath.Join(cache, "image-"+key(base, imageFormat))
	if done(image) {
		return image, nil
	}
	tmp := image + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := run(log, "cp", "-a", base, tmp); err != nil {
		return "", err
	}
	if err := customize(tmp); err != nil {
		return "", fmt.Errorf("customise the lab image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".privcloud-image"), []byte(imageFormat+"\n"), 0o644); err != nil {
		return "", err
	}
	return image, os.Rename(tmp, image)
}

func ensureDebootstrap(cache string, log io.Writer) (string, error) {
	base := filepath.Join(cache, "debootstrap-"+key(Suite, strings.Join(Packages, ",")))
	if done(base) {
		return base, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap is not installed: apt-get install debootstrap systemd-container")
	}
	tmp := base + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	if err := run(log, "debootstrap", "--variant=minbase", "--include="+strings.Join(Packages, ","), Suite, tmp, Mirror); err != nil {
		return "", fmt.Errorf("debootstrap (its log is in %s/debootstrap/debootstrap.log): %w", tmp, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".privcloud-image"), []byte("debootstrap\n"), 0o644); err != nil {
		return "", err
	}
	return base, os.Rename(tmp, base)
}

func done(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".privcloud-image"))
	return err == nil
}

func key(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:6])
}

func run(log io.Writer, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// customize turns a Debian root into a lab host image, as the recipe describes.
func customize(root string) error {
	files := map[string]string{
		"etc/ssh/sshd_config.d/lab.conf": "PermitRootLogin prohibit-password\nUseDNS no\n",
		// host keys are written per host before boot; this only fills in types that are missing
		"etc/systemd/system/ssh.service.d/keys.conf": "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
		// nspawn mounts the cgroup v1 controllers read-only; runc and the kubelet need them writable
		"etc/systemd/system/lab-cgroup-rw.service": `[Unit]
Description=Make cgroup v1 controller mounts writable
DefaultDependencies=no
Before=sysinit.target containerd.service kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mount -o remount,rw /sys/fs/cgroup; for c in /sys/fs/cgroup/*; do mountpoint -q $c && mount -o remount,bind,rw $c; done; true'
[Install]
WantedBy=sysinit.target
`,
		// defence in depth: nothing leaves eth0 for an address outside the lab's network (mangle POSTROUTING runs after
		// kube-proxy's DNAT, so host-to-ClusterIP traffic still works). Pod addresses may leave: the only routes
		// to them lead to other lab hosts, as the rest of the pod network is unreachable rather than sent to
		// the gateway.
		"etc/systemd/system/lab-egress-guard.service": `[Unit]
Description=Drop traffic leaving the lab network
DefaultDependencies=no
Before=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip route add unreachable ` + PodCIDR + `
ExecStart=/usr/sbin/iptables -t mangle -A POSTROUTING -o eth0 -d ` + PodCIDR + ` -j RETURN
ExecStart=/usr/sbin/iptables -t mangle -A POSTROUTING -o eth0 ! -d ` + Network + ` -j DROP
[Install]
WantedBy=sysinit.target
`,
		// the kubelet writes three machine-wide sysctls; shadow them inside the host with the values it
		// expects, so it writes nothing and the machine keeps its own
		"etc/lab-sysctl/overcommit_memory": "1\n",
		"etc/lab-sysctl/panic":             "10\n",
		"etc/lab-sysctl/panic_on_oops":     "1\n",
		"etc/systemd/system/lab-sysctl-shield.service": `[Unit]
Description=Shadow machine-wide sysctls that the kubelet would write
DefaultDependencies=no
Before=sysinit.target kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount --bind /etc/lab-sysctl/overcommit_memory /proc/sys/vm/overcommit_memory
ExecStart=/bin/mount --bind /etc/lab-sysctl/panic /proc/sys/kernel/panic
ExecStart=/bin/mount --bind /etc/lab-sysctl/panic_on_oops /proc/sys/kernel/panic_on_oops
[Install]
WantedBy=sysinit.target
`,
		// no resolver: a missing image must not send DNS queries towards the machine's resolver
		"etc/resolv.conf": "# lab hosts have no resolver\n",
		"etc/machine-id":  "",
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for i := 1; i <= maxHosts; i++ {
		fmt.Fprintf(&hosts, "%s h%d\n", HostIP(i), i)
	}
	files["etc/hosts"] = hosts.String()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700); err != nil {
		return err
	}
	for unit, target := range map[string]string{"lab-cgroup-rw.service": "sysinit.target", "lab-egress-guard.service": "sysinit.target",
		"lab-sysctl-shield.service": "sysinit.target", "ssh.service": "multi-user.target"} {
		dir := filepath.Join(root, "etc/systemd/system", target+".wants")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		src := "/etc/systemd/system/" + unit
		if unit == "ssh.service" {
			src = "/lib/systemd/system/ssh.service"
		}
		link := filepath.Join(dir, unit)
		os.Remove(link)
		if err := os.Symlink(src, link); err != nil {
			return err
		}
	}
	for _, unit := range []string{"console-getty.service", "getty@tty1.service", "systemd-networkd.service", "apt-daily.timer", "apt-daily-upgrade.timer"} {
		link := filepath.Join(root, "etc/systemd/system", unit)
		os.Remove(link)
		if err := os.Symlink("/dev/null", link); err != nil {
			return err
		}
	}
	return nil
}
