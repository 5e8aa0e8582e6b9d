package phases

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/kube"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/templates"
)

// Where flanneld answers /healthz, the UDP port its VXLAN traffic uses (the Linux and flannel default), and the
// file it writes once it holds the node's lease: the flannel CNI plugin reads the node's subnet and MTU there.
const (
	flannelHealthPort = 20245
	flannelVXLANPort  = 8472
	flannelSubnetFile = "/run/flannel/subnet.env"
)

// runFlannel starts flanneld on the node and, once it holds the node's lease (its pod CIDR, from the API, and
// the MTU of its interface less the VXLAN overhead), points the CNI at it. The CNI configuration comes last:
// containerd calls a node's network ready as soon as one exists.
func runFlannel(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	n := r.Cluster.Spec.Network
	d := templates.Flannel{Name: t.Spec.Name, IP: t.Spec.InternalAddress, HealthPort: flannelHealthPort, Network: n.PodCIDR, VXLANPort: flannelVXLANPort}
	if p, err := netip.ParsePrefix(n.PodCIDR); err == nil && p.Addr().Is6() {
		d.IPv6 = true
	}
	if r.Wet(t.Spec.Name, "wait until the node has its pod CIDR") {
		if err := withControlPlaneAPI(r, func(c *kube.Client) error {
			_, err := c.WaitNode(ctx, t.Spec.Name, "a pod CIDR", 2*time.Minute, func(n *corev1.Node) bool { return n.Spec.PodCIDR != "" })
			return err
		}); err != nil {
			return err
		}
	}
	if err := ensureService(ctx, r, t, pki.FlannelUnit,
		hostops.File{Path: "/etc/kubernetes/flannel/net-conf.json", Content: render("flannel-net-conf.json", d), Mode: 0o644},
		hostops.File{Path: "/etc/systemd/system/" + pki.FlannelUnit + ".service", Content: render("privcloud-flannel.service", d), Mode: 0o600}); err != nil {
		return err
	}
	if r.Wet(t.Spec.Name, "wait until flanneld holds the node's lease ("+flannelSubnetFile+")") {
		if err := hostops.WaitHealthy(ctx, t.Host, pki.FlannelUnit, net.JoinHostPort("127.0.0.1", strconv.Itoa(flannelHealthPort)), "/healthz", "", nil, 2*time.Minute); err != nil {
			return err
		}
		if err := hostops.WaitFile(ctx, t.Host, pki.FlannelUnit, flannelSubnetFile, 2*time.Minute); err != nil {
			return err
		}
	}
	return writeCNIConfig(ctx, r, t, render("flannel.conflist", d))
}
