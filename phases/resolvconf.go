package phases

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"strings"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/ssh"
)

// The files a node's resolver configuration may live in.
const (
	hostResolvConf = "/etc/resolv.conf"
	// resolvedResolvConf is systemd-resolved's list of the real upstream servers, behind its 127.0.0.53 stub.
	resolvedResolvConf = "/run/systemd/resolve/resolv.conf"
)

// podResolvConf picks the file the kubelet hands to pods with dnsPolicy Default, CoreDNS among them, and
// returns its content: /etc/resolv.conf, unless it names only loopback stubs (systemd-resolved's 127.0.0.53,
// which a pod's network namespace cannot reach) while systemd-resolved's own file names real servers.
func podResolvConf(ctx context.Context, h ssh.Host) (string, []byte, error) {
	data, err := hostops.ReadIfExists(ctx, h, hostResolvConf)
	if err != nil || len(usableNameservers(data)) > 0 {
		return hostResolvConf, data, err
	}
	resolved, err := hostops.ReadIfExists(ctx, h, resolvedResolvConf)
	if err != nil {
		return "", nil, err
	}
	if len(usableNameservers(resolved)) > 0 {
		return resolvedResolvConf, resolved, nil
	}
	return hostResolvConf, data, nil
}

// usableNameservers lists the resolv.conf nameservers a pod can reach (not loopback stubs).
func usableNameservers(resolvConf []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip, err := netip.ParseAddr(f[1]); err == nil && !ip.IsLoopback() {
				out = append(out, f[1])
			}
		}
	}
	return out
}
