package phases

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/ssh"
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

// wantsComponent reports whether a host's roles call for a component (no roles: every host).
func wantsComponent(h api.Host, c bundle.Component) bool {
	if c.ImageOnly {
		return false
	}
	if len(c.Roles) == 0 {
		return true
	}
	return slices.ContainsFunc(c.Roles, func(r string) bool { return h.HasRole(api.Role(r)) })
}

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
}

func (s *bundleState) prepare(r *workflow.Run) error {
	s.once.Do(func() {
		file := r.Cluster.Spec.Bundle.Path
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			s.err = fmt.Errorf("the bundle %s (spec.bundle.path) does not exist: build it with 'privcloud bundle build' (the lab's: 'make bundle')", file)
			return
		}
		v, err := bundle.Verify(file, nil)
		if err != nil {
			s.err = err
			return
		}
		s.manifest = v.Manifest
		// unpacked per bundle content: the same bundle is never unpacked twice
		s.local = filepath.Join(r.Cluster.Spec.StateDir, "bundle", bundleID(v.Manifest))
		needed := map[string]bool{}
		for _, c := range v.Manifest.Components {
			if c.Kind == "absent" {
				continue
			}
			for _, h := range r.Cluster.Spec.Hosts {
				if wantsComponent(h, c) {
					if _, err := os.Stat(filepath.Join(s.local, c.Path)); err != nil {
						needed[c.Path] = true
					}
				}
			}
		}
		if len(needed) > 0 {
			_, s.err = bundle.Extract(file, s.local, func(p string) bool { return needed[p] })
		}
	})
	return s.err
}

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
	for _, c := range s.manifest.Components {
		if c.Kind != "binary" || !wantsComponent(t.Spec, c) {
			continue // images are streamed into containerd by containerd/images
		}
		dst := RemotePath(c)
		changed, err := t.Host.Upload(ctx, ssh.NewFile(filepath.Join(s.local, c.Path), c.SHA256), dst, 0o755, ssh.WithOwner("root:root"))
		if err != nil {
			return fmt.Errorf("%s %s: %w", c.Name, c.Version, err)
		}
		if changed {
			r.Changed(t.Spec.Name, dst)
		}
	}
	return nil
}
