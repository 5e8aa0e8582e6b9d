package phases

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/privcloud/privcloud/addons"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/upgrade"
)

// RemoteBinDir is where bundle binaries go on hosts, each under its own version, so two versions sit side by
// side for upgrades and rollbacks.
const RemoteBinDir = "/opt/privcloud"

// RemotePath is where a binary of the bundle is installed on a host.
func RemotePath(c bundle.Component) string {
	return path.Join(RemoteBinDir, c.Name, c.Version, c.Name)
}

// LocalPath is where a component of the bundle was unpacked on this machine.
func (s *bundleState) LocalPath(c bundle.Component) string { return filepath.Join(s.local, c.Path) }

func distributeBundle(st *bundleState) workflow.Phase {
	return workflow.Phase{Name: "bundle", Short: "Send each host the binaries its roles need, verified by sha256 (images go to containerd)", RunHost: st.distribute}
}

// bundleState verifies and unpacks the bundle once per run, for every host.
type bundleState struct {
	once     sync.Once
	manifest *bundle.Manifest
	local    string // folder the needed files were extracted to
	err      error
	warnOnce sync.Once
	// stageOnly puts binaries in place without switching any link: an upgrade switches them host by host
	stageOnly bool
}

func (s *bundleState) prepare(r *workflow.Run) error {
	s.once.Do(func() {
		file := r.Cluster.Spec.Bundle.Path
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			s.err = fmt.Errorf("the bundle %s (spec.bundle.path) does not exist: build it with 'privcloud bundle build' (the lab's: 'make bundle')", file)
			return
		}
		// a bundle not verified before is unpacked as it is verified: one read of the archive
		s.manifest, s.err = verifyBundle(file, filepath.Join(r.Cluster.Spec.StateDir, "bundle"), func(m *bundle.Manifest) (string, func(string) bool) {
			needed := neededFiles(r, m)
			return unpackDir(r, m), func(p string) bool { return needed[p] }
		}, r.Cluster.Spec.Bundle.PublicKeys...)
		if s.err != nil {
			return
		}
		// what a bundle verified before lacks here (cluster.yaml gained a role, say)
		s.local = unpackDir(r, s.manifest)
		needed := neededFiles(r, s.manifest)
		if len(needed) > 0 {
			_, s.err = bundle.Extract(file, s.local, func(p string) bool { return needed[p] })
		}
		// init and join install this bundle; an upgrade records it once it has finished
		if s.err == nil && !s.stageOnly && !r.DryRun {
			s.err = recordAppliedBundle(r.Cluster.Spec.StateDir, s.manifest)
		}
	})
	return s.err
}

// unpackDir is where the bundle's files are unpacked on this machine: per bundle content, so the same bundle is
// never unpacked twice.
func unpackDir(r *workflow.Run, m *bundle.Manifest) string {
	return filepath.Join(r.Cluster.Spec.StateDir, "bundle", bundleID(m))
}

// neededFiles are the bundle's files some host of cluster.yaml needs and this machine has not unpacked yet: the
// binaries of their roles and the images something runs.
func neededFiles(r *workflow.Run, m *bundle.Manifest) map[string]bool {
	needed := map[string]bool{}
	unused := addons.UnusedImages(&r.Cluster.Spec)
	local := unpackDir(r, m)
	for _, c := range m.Components {
		if c.Kind == "absent" || (c.Kind == "image" && unused[c.Name]) {
			continue
		}
		for _, h := range r.Cluster.Spec.Hosts {
			if c.NeededBy(h) {
				if _, err := os.Stat(filepath.Join(local, c.Path)); err != nil {
					needed[c.Path] = true
				}
			}
		}
	}
	return needed
}

// appliedBundlePath keeps the manifest of the bundle the cluster last ran: 'upgrade plan' shows what the
// next bundle changes against it.
func appliedBundlePath(stateDir string) string {
	return filepath.Join(stateDir, "bundle", "applied.json")
}

func recordAppliedBundle(stateDir string, m *bundle.Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(appliedBundlePath(stateDir)), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(appliedBundlePath(stateDir), data, 0o600)
}

// appliedBundle reads the manifest recordAppliedBundle kept, or nil when there is none.
func appliedBundle(stateDir string) (*bundle.Manifest, error) {
	data, err := os.ReadFile(appliedBundlePath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m bundle.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", appliedBundlePath(stateDir), err)
	}
	return &m, nil
}

// verifiedManifest verifies the bundle fully (every file's sha256) unless this very file (same size, inode
// and change time) was verified before, as recorded in dir: a re-run does not re-read the whole archive.
// With keyFiles (spec.bundle.publicKeys), one of those keys must have signed the bundle; that is checked on
// every run, as it reads the manifest only.
func verifiedManifest(file, dir string, keyFiles ...string) (*bundle.Manifest, error) {
	return verifyBundle(file, dir, nil, keyFiles...)
}

// verifyBundle is verifiedManifest that, when it reads the whole archive, also unpacks the files unpack
// selects into the folder it names (unpack is given the manifest; nil unpacks nothing).
func verifyBundle(file, dir string, unpack func(*bundle.Manifest) (string, func(string) bool), keyFiles ...string) (*bundle.Manifest, error) {
	keys, err := readPublicKeys(keyFiles)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	id := fmt.Sprintf("%s %d %d %d", file, fi.Size(), fi.ModTime().UnixNano(), 0)
	if st != nil {
		id = fmt.Sprintf("%s %d %d %d.%09d", file, fi.Size(), st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
	}
	r, err := bundle.Open(file)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// before the record is trusted: a .sig can be replaced or removed without the bundle changing
	if len(keys) > 0 {
		if err := r.VerifySignature(keys...); err != nil {
			return nil, &unsignedError{file: file, keyFiles: keyFiles, err: err}
		}
	}
	record := filepath.Join(dir, "verified")
	if data, err := os.ReadFile(record); err == nil && strings.TrimSpace(string(data)) == id {
		return r.Manifest, nil
	}
	var into string
	var wanted func(string) bool
	if unpack != nil {
		into, wanted = unpack(r.Manifest)
	}
	v, err := bundle.VerifyExtract(file, into, wanted, keys...)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return v.Manifest, atomicfile.Write(record, []byte(id+"\n"), 0o600)
}

// readPublicKeys reads spec.bundle.publicKeys. A key file that cannot be read stops the run rather than
// being skipped: cluster.yaml asked for it.
func readPublicKeys(files []string) ([]ed25519.PublicKey, error) {
	keys := make([]ed25519.PublicKey, 0, len(files))
	for _, f := range files {
		k, err := bundle.ReadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("spec.bundle.publicKeys: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// unsignedError refuses a bundle no key of spec.bundle.publicKeys signed, saying which keys were tried and how
// to sign it. It unwraps to the *bundle.VerifyError.
type unsignedError struct {
	file     string
	keyFiles []string
	err      error
}

func (e *unsignedError) Error() string {
	cause := e.err.Error()
	var ve *bundle.VerifyError
	if errors.As(e.err, &ve) {
		cause = strings.Join(ve.Problems, "; ")
	}
	return fmt.Sprintf("the bundle %s is not signed by a key of spec.bundle.publicKeys (tried %s): %s; sign it with 'privcloud bundle sign --key KEY %s', KEY being the private key of one of them",
		e.file, strings.Join(e.keyFiles, ", "), cause, e.file)
}

func (e *unsignedError) Unwrap() error { return e.err }

func bundleID(m *bundle.Manifest) string {
	h := sha256.New()
	for _, f := range m.Files {
		h.Write([]byte(f.Path + " " + f.SHA256 + "\n"))
	}
	return fmt.Sprintf("%s-%x", m.Name, h.Sum(nil)[:8])
}

func (s *bundleState) distribute(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	if err := s.prepare(r); err != nil {
		return err
	}
	s.warnOnce.Do(func() {
		for _, c := range s.manifest.Components {
			if c.Kind == "absent" {
				r.Warn("", fmt.Sprintf("%s %s is not in the bundle: %s", c.Name, c.Version, c.Absent))
			}
		}
	})
	if !s.stageOnly {
		if err := refuseVersionChange(ctx, t, s.manifest, r.Cluster.Spec.KubernetesVersion); err != nil {
			return err
		}
	}
	var wanted []bundle.Component
	var paths []string
	for _, c := range s.manifest.Components {
		if c.Kind == "binary" && c.NeededBy(t.Spec) { // images are streamed into containerd by containerd/images
			wanted = append(wanted, c)
			paths = append(paths, RemotePath(c))
		}
	}
	// what the host already has, in one round trip: only files that differ are sent
	have, err := ssh.States(ctx, t.Host, paths)
	if err != nil {
		return err
	}
	type link struct{ path, dst, unit string }
	var switches []link
	for _, c := range wanted {
		dst := RemotePath(c)
		if !have[dst].Matches(c.SHA256, 0o755, "root:root") {
			changed, err := t.Host.Upload(ctx, ssh.NewFile(filepath.Join(s.local, c.Path), c.SHA256), dst, 0o755, ssh.WithOwner("root:root"))
			if err != nil {
				return fmt.Errorf("%s %s: %w", c.Name, c.Version, err)
			}
			if changed {
				r.Changed(t.Spec.Name, dst)
			}
		}
		if path := activeLink(c); path != "" && !s.stageOnly && active(s.manifest, c, r.Cluster.Spec.KubernetesVersion) {
			switches = append(switches, link{path, dst, restartedOnSwitch[c.Name]})
		}
	}
	if len(switches) == 0 {
		return nil
	}
	// the links are read in one command, and a script switches only those that point elsewhere
	linkPaths := make([]string, len(switches))
	for i, l := range switches {
		linkPaths[i] = l.path
	}
	targets, err := hostops.LinkTargets(ctx, t.Host, linkPaths)
	if err != nil {
		return err
	}
	var links strings.Builder
	for _, l := range switches {
		switch {
		case targets[l.path] == l.dst:
		case l.unit != "":
			// a running unit owes a restart to its new binary (a first install starts it later anyway)
			fmt.Fprintf(&links, "out=$(%s)\nif [ -n \"$out\" ]; then echo \"$out\"; if systemctl is-active -q %s; then echo restart:%[2]s; fi; fi\n",
				strings.TrimSuffix(hostops.SwitchLinkScript(l.path, l.dst), "\n"), l.unit)
		default:
			links.WriteString(hostops.SwitchLinkScript(l.path, l.dst))
		}
	}
	if links.Len() == 0 {
		return nil
	}
	res, err := t.Host.Run(ctx, "set -e\n"+links.String())
	if err != nil {
		return err
	}
	for _, l := range strings.Fields(string(res.Stdout)) {
		if unit, ok := strings.CutPrefix(l, "restart:"); ok {
			rolloutOf(r).oweRestart(t.Spec.Name, unit)
			continue
		}
		r.Changed(t.Spec.Name, "linked "+l)
	}
	return nil
}

// restartedOnSwitch are the components outside a Kubernetes release whose units privcloud restarts when the
// bundle brings a new version (the restart phase at the end of the run does it): the pod network, the
// NetworkPolicy firewall and the API load balancer keep the kernel's state or their peers' connections
// across a restart. Kubernetes and etcd change versions through 'upgrade apply' alone.
var restartedOnSwitch = map[string]string{
	"flanneld":         pki.FlannelUnit,
	"kube-router":      pki.KubeRouterUnit,
	"privcloud-api-lb": pki.APILoadBalancerUnit,
	pki.MetricsUnit:    pki.MetricsUnit,
}

// refuseVersionChange stops init and join on a host that runs other versions of Kubernetes or etcd than
// cluster.yaml and the bundle say: switching every link there at once would restart the whole control plane
// together. 'upgrade apply' changes versions, one service at a time behind health gates.
func refuseVersionChange(ctx context.Context, t *workflow.Target, m *bundle.Manifest, kubernetesVersion string) error {
	installed, err := installedVersions(ctx, t.Host)
	if err != nil {
		return err
	}
	var runs []string
	for name, v := range installed {
		want := kubernetesVersion
		if slices.Contains(upgrade.EtcdComponents, name) {
			if first := m.Find(name, ""); first != nil {
				want = first.Version
			}
		}
		if v != want {
			runs = append(runs, fmt.Sprintf("%s %s (not %s)", name, v, want))
		}
	}
	if len(runs) == 0 {
		return nil
	}
	slices.Sort(runs)
	return fmt.Errorf("the host runs %s: init and join never change versions; 'privcloud upgrade plan' shows the upgrade and 'privcloud upgrade apply' makes it, one service at a time",
		strings.Join(runs, ", "))
}

// activeLink is the well-known path of a binary: CNI plugins where containerd looks for them, the rest on PATH.
func activeLink(c bundle.Component) string {
	if plugin, ok := strings.CutPrefix(c.Name, "cni-"); ok && plugin != "" { // "cni-" alone would name the folder
		return "/opt/cni/bin/" + plugin
	}
	return "/usr/local/bin/" + c.Name
}

// binaryPath is where the bundle installs the component called name.
func binaryPath(name string) string { return activeLink(bundle.Component{Name: name}) }

// kubernetesComponents are the binaries of a Kubernetes release: the one of spec.kubernetesVersion is active.
var kubernetesComponents = slices.Concat(upgrade.ControlPlaneComponents, upgrade.NodeComponents)

// active reports whether c is the version of its binary that should run: for Kubernetes components the one of
// kubernetesVersion, for the others the first the bundle lists.
func active(m *bundle.Manifest, c bundle.Component, kubernetesVersion string) bool {
	if slices.Contains(kubernetesComponents, c.Name) {
		return c.Version == kubernetesVersion
	}
	first := m.Find(c.Name, "")
	return first != nil && first.Version == c.Version
}
