package phases

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/privcloud/privcloud/addons"
	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/templates"
)

// The containerd runtime on nodes.
const (
	containerdSocket    = "/run/containerd/containerd.sock"
	containerdNamespace = "k8s.io" // where the kubelet's CRI looks for images
	// archiveLabel records which bundle archive an image came from, so an unchanged image is not imported again.
	archiveLabel = "privcloud.io/archive-sha256"
	// pinnedLabel is containerd's CRI mark of a pinned image, which the kubelet's image garbage collection never
	// removes: a bundle's image cannot be pulled again where there is no registry, so a node short of disk must
	// not delete the images its pods would need next.
	pinnedLabel, pinned = "io.cri-containerd.pinned", "pinned"
)

var nodes = []api.Role{api.RoleControlPlane, api.RoleWorker}

func containerd(b *bundleState) workflow.Phase {
	return workflow.Phase{Name: "containerd", Short: "Install and configure containerd, runc and Kata; import images", Phases: []workflow.Phase{
		{Name: "config", Short: "Write containerd's unit, drop-in configuration (runtimes, sandbox image) and registry mirrors; start it", Roles: nodes,
			RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
				return configureContainerd(ctx, r, t, b)
			}},
		{Name: "images", Short: "Stream the bundle's images into containerd through its API, over SSH", Roles: nodes,
			RunHost: func(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
				return importImages(ctx, r, t, b)
			}},
	}}
}

// configureContainerd writes containerd's unit and configuration and (re)starts it only when they changed or
// it is not running, then waits until its API answers.
func configureContainerd(ctx context.Context, r *workflow.Run, t *workflow.Target, b *bundleState) error {
	if err := b.prepare(r); err != nil {
		return err
	}
	spec := r.Cluster.Spec
	data := templates.Containerd{DefaultRuntime: spec.Containerd.DefaultRuntime, SystemdCgroup: spec.Kubelet.CgroupDriver == "systemd",
		RestrictOOMScoreAdj: spec.Containerd.RestrictOOMScoreAdj, Kata: spec.Containerd.Kata.Enabled, KataHandler: spec.Containerd.Kata.Handler,
		SandboxImage: sandboxImage(b.manifest)}
	if c := b.manifest.Find("containerd", ""); c != nil {
		data.Version = c.Version
	}
	var files []hostops.File
	for _, f := range []struct{ template, path string }{
		{"containerd.service", "/etc/systemd/system/containerd.service"},
		{"containerd-config.toml", "/etc/containerd/config.toml"},
		{"containerd-privcloud.toml", containerdDropIn},
	} {
		content, err := templates.Render(f.template, data)
		if err != nil {
			return err
		}
		files = append(files, hostops.File{Path: f.path, Content: content, Mode: 0o644})
	}
	if err := ensureService(ctx, r, t, "containerd", files...); err != nil {
		return err
	}
	if err := writeRegistryMirrors(ctx, r, t); err != nil {
		return err
	}
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	cl, err := containerdClient(ctx, t.Host)
	if err != nil {
		return err
	}
	defer cl.Close()
	return waitContainerd(ctx, cl, 60*time.Second)
}

// sandboxImage is the reference of the bundle's pause image.
func sandboxImage(m *bundle.Manifest) string {
	if c := m.Find("pause", ""); c != nil && c.ImageRef != "" {
		return c.ImageRef
	}
	return "registry.k8s.io/pause:3.10"
}

// containerdClient talks to a host's containerd through the SSH connection: no port is opened on the host.
func containerdClient(ctx context.Context, h ssh.Host) (*client.Client, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) { return h.Dial(ctx, "unix", containerdSocket) }
	return client.New(containerdSocket, client.WithDefaultNamespace(containerdNamespace), client.WithDialOpts([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial),
	}))
}

func waitContainerd(ctx context.Context, cl *client.Client, limit time.Duration) error {
	err := wait.Poll(ctx, limit, 250*time.Millisecond, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cl.Version(cctx)
		return err
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("containerd did not answer within %s: %w (see journalctl -u containerd)", limit, err)
	}
	return err
}

// importImages streams each image the host needs from the local bundle into its containerd; an image already
// imported from the same archive is skipped, and so is an image only add-ons that cluster.yaml leaves off would
// run ('addons apply' imports it once one is turned on).
func importImages(ctx context.Context, r *workflow.Run, t *workflow.Target, b *bundleState) error {
	if err := b.prepare(r); err != nil {
		return err
	}
	unused := addons.UnusedImages(&r.Cluster.Spec)
	var wanted []bundle.Component
	var plans []string
	for _, c := range b.manifest.Components {
		if c.Kind == "image" && c.NeededBy(t.Spec) && !unused[c.Name] {
			wanted = append(wanted, c)
			plans = append(plans, "import image "+c.ImageRef)
		}
	}
	if !r.Wet(t.Spec.Name, plans...) {
		return nil
	}
	cl, err := containerdClient(ctx, t.Host)
	if err != nil {
		return err
	}
	defer cl.Close()
	sandbox := sandboxImage(b.manifest)
	for _, c := range wanted {
		if img, err := cl.GetImage(ctx, c.ImageRef); err == nil && img.Labels()[archiveLabel] == c.SHA256 {
			if img.Labels()[pinnedLabel] != pinned { // imported before images were pinned
				meta := img.Metadata()
				meta.Labels = map[string]string{archiveLabel: c.SHA256, pinnedLabel: pinned}
				if _, err := cl.ImageService().Update(ctx, meta, "labels."+pinnedLabel); err != nil {
					return fmt.Errorf("image %s: %w", c.ImageRef, err)
				}
				r.Changed(t.Spec.Name, "pinned "+c.ImageRef)
			}
			continue
		}
		// the sandbox image is unpacked now, as every pod starts with it; the others on a pod's first use of them
		// (containerd's CRI unpacks an image it finds packed), so a node never holds an unpacked copy of an image
		// none of its pods runs
		if err := importImage(ctx, cl, b.LocalPath(c), c.SHA256, c.ImageRef == sandbox); err != nil {
			return fmt.Errorf("image %s: %w", c.ImageRef, err)
		}
		r.Changed(t.Spec.Name, "imported "+c.ImageRef)
	}
	return nil
}

func importImage(ctx context.Context, cl *client.Client, path, sha string, unpack bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	imgs, err := cl.Import(ctx, f, client.WithImageLabels(map[string]string{archiveLabel: sha, pinnedLabel: pinned}))
	if err != nil {
		return err
	}
	if len(imgs) == 0 {
		return errors.New("the archive holds no image")
	}
	if !unpack {
		return nil
	}
	for _, i := range imgs {
		if err := client.NewImage(cl, i).Unpack(ctx, ""); err != nil {
			return fmt.Errorf("unpack %s: %w", i.Name, err)
		}
	}
	return nil
}

// containerdDropIn is privcloud's own part of containerd's configuration (runtimes, sandbox image).
const containerdDropIn = "/etc/containerd/conf.d/privcloud.toml"

// kataOnNodes fails when a node's containerd lacks the Kata runtime, which the containerd phase of init and
// join registers: pods asking for the RuntimeClass would never start there.
func kataOnNodes(ctx context.Context, r *workflow.Run) error {
	runtime := "containerd.runtimes." + r.Cluster.Spec.Containerd.Kata.Handler + "]"
	return requireOnHostsWhere(ctx, r, r.TargetsFor(nodes), "grep -qF -- "+ssh.ShellQuote(runtime)+" "+containerdDropIn, "runtime "+r.Cluster.Spec.Containerd.Kata.Handler+" in "+containerdDropIn,
		"Kata", "nodes' containerd lacks its runtime")
}
