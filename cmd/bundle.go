package cmd

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/bundle"
	bundlebuild "github.com/privcloud/privcloud/bundle/build"
	"github.com/privcloud/privcloud/report"
)

func newBundleCommand(g *globalOptions) *cobra.Command {
	c := group("bundle", "Build, verify, inspect and sign the air-gap bundle")
	c.AddCommand(newBundleBuildCommand(g), newBundleVerifyCommand(g), newBundleInspectCommand(g), newBundleSignCommand(g), newBundleKeygenCommand(g),
		newBundleDiffCommand(g))
	return c
}

func newBundleBuildCommand(g *globalOptions) *cobra.Command {
	var spec, out, cache, registryConfig, registryCA string
	var pin bool
	c := &cobra.Command{
		Use:   "build",
		Short: "Build a bundle from bundle.yaml: every binary and image, a manifest and an SBOM in one archive",
		Long: `Build the bundle bundle.yaml describes into one tar+zstd archive. Sources: file (a local path), url (with
its pinned sha256), go (a module version built with CGO_ENABLED=0 and -trimpath through the Go module proxy),
image.pull (from a registry) and image.fromBinary (an image assembled from the bundle's own binaries).
Build outputs are cached under --cache, so a rebuild with nothing changed only packs the archive. This is the
only step that may reach the network; installing from the bundle never does.

Pulled images: pin them by digest (name:tag@sha256:...), which must then match exactly; a multi-platform
index resolves to spec.platform. --pin writes the digest each tag names today into bundle.yaml before
building. Registry credentials come from a Docker-style config.json (--registry-config, else $DOCKER_CONFIG or
~/.docker/config.json, $REGISTRY_AUTH_FILE, podman's auth.json), with its credential helpers; they never reach
the bundle. A registry behind a private CA: --registry-ca.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := api.LoadBundle(spec)
			if err != nil {
				return &configError{err: err, path: spec}
			}
			var reg bundlebuild.Registries
			if registryConfig != "" {
				if reg.Keychain, err = bundlebuild.RegistryConfigKeychain(registryConfig); err != nil {
					return asUsageError(err)
				}
			}
			if registryCA != "" {
				if reg.Transport, err = bundlebuild.TransportTrusting(registryCA); err != nil {
					return asUsageError(err)
				}
			}
			if pin {
				pinned, err := bundlebuild.Pin(c.Context(), spec, b, reg)
				if err != nil {
					return err
				}
				for _, p := range pinned {
					fmt.Fprintf(g.streams.Err, "pinned %s: %s@%s\n", p.Component, p.Pull, p.Digest)
				}
				if len(pinned) > 0 {
					if b, err = api.LoadBundle(spec); err != nil {
						return &configError{err: err, path: spec}
					}
				}
			}
			start := time.Now()
			progress, done := g.buildProgress(start)
			m, err := (&bundlebuild.Builder{Cache: cache, Log: g.progressLog(), Progress: progress, Registries: reg}).Build(c.Context(), b, out)
			done()
			if err != nil {
				return err
			}
			for _, comp := range b.Spec.Components {
				if comp.Image != nil && comp.Image.Pull != "" && !strings.Contains(comp.Image.Pull, "@") {
					fmt.Fprintf(g.streams.Err, "warning: %s is pulled by tag (%s): the next build may get another image; pin it with --pin\n", comp.Name, comp.Image.Pull)
				}
			}
			if g.format == report.JSON {
				g.writeJSON(map[string]any{"bundle": out, "manifest": m, "seconds": time.Since(start).Seconds()})
				return nil
			}
			g.printComponents(m)
			fi, _ := os.Stat(out)
			fmt.Fprintf(g.streams.Out, "wrote %s (%d components, %.1f MiB) in %s\n", out, len(m.Components),
				float64(fi.Size())/(1<<20), time.Since(start).Round(10*time.Millisecond))
			return nil
		},
	}
	home, _ := os.UserHomeDir()
	c.Flags().StringVarP(&spec, "file", "f", "bundle.yaml", "bundle description")
	c.Flags().StringVarP(&out, "output", "o", "privcloud-bundle.tar.zst", "bundle file to write")
	c.Flags().StringVar(&cache, "cache", filepath.Join(home, ".cache/privcloud/bundle"), "build cache")
	c.Flags().StringVar(&registryConfig, "registry-config", "", "Docker-style config.json with the registries' credentials (default: $DOCKER_CONFIG, ~/.docker/config.json, ...)")
	c.Flags().StringVar(&registryCA, "registry-ca", "", "PEM file of CA certificates to trust for registries, besides the system's")
	c.Flags().BoolVar(&pin, "pin", false, "write into bundle.yaml the digest of every image.pull given by tag, then build")
	return c
}

// buildProgress shows a bundle build's steps on stderr: one line kept current on a terminal (redrawn every
// second with the step's time and the time so far), plain lines otherwise (CI, -o json, -v with the tools'
// output). done ends the display.
func (g *globalOptions) buildProgress(start time.Time) (func(bundlebuild.Progress), func()) {
	f, ok := g.streams.Err.(*os.File)
	live := ok && term.IsTerminal(int(f.Fd())) && g.format == report.Text && g.verbose == 0
	var mu sync.Mutex
	var cur bundlebuild.Progress
	var stepStart time.Time
	describe := func() string {
		what := cur.Action + " " + cur.Name
		if cur.Version != "" {
			what += " " + cur.Version
		}
		return fmt.Sprintf("bundle: [%d/%d] %s", cur.Step, cur.Steps, what)
	}
	if !live {
		return func(p bundlebuild.Progress) {
			mu.Lock()
			defer mu.Unlock()
			cur = p
			fmt.Fprintf(g.streams.Err, "%s (at %s)\n", describe(), time.Since(start).Round(time.Second))
		}, func() {}
	}
	stop := make(chan struct{})
	ticker := time.NewTicker(time.Second)
	draw := func() {
		if cur.Steps > 0 {
			fmt.Fprintf(g.streams.Err, "\r\033[K%s (%s, %s in all)", describe(), time.Since(stepStart).Round(time.Second), time.Since(start).Round(time.Second))
		}
	}
	go func() {
		for {
			select {
			case <-ticker.C:
				mu.Lock()
				draw()
				mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	return func(p bundlebuild.Progress) {
			mu.Lock()
			defer mu.Unlock()
			cur, stepStart = p, time.Now()
			draw()
		}, func() {
			ticker.Stop()
			close(stop)
			mu.Lock()
			defer mu.Unlock()
			if cur.Steps > 0 {
				fmt.Fprint(g.streams.Err, "\r\033[K")
			}
		}
}

// progressLog is where long builds print their tools' output: stderr with -v, nowhere otherwise.
func (g *globalOptions) progressLog() io.Writer {
	if g.verbose > 0 {
		return g.streams.Err
	}
	return nil
}

func newBundleVerifyCommand(g *globalOptions) *cobra.Command {
	var pubPath string
	c := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check every file of a bundle against its manifest, and its signature",
		Long: `Read the whole bundle once and check every file's sha256 and size against the manifest, that nothing is
missing or added, that every image archive holds the image the manifest records (its ID, every layer), and the detached signature FILE.sig: with --pub it must exist and verify with that key.
Fully offline. Exits 5 and lists every problem when the bundle does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var pub ed25519.PublicKey
			if pubPath != "" {
				var err error
				if pub, err = bundle.ReadPublicKey(pubPath); err != nil {
					return asUsageError(err)
				}
			}
			v, err := bundle.Verify(args[0], pub)
			if err != nil {
				return err
			}
			sig := "unsigned"
			if v.Signed {
				sig = "signature verified"
			} else if _, serr := os.Stat(args[0] + ".sig"); serr == nil {
				sig = "signed (pass --pub to verify the signer)"
			}
			fmt.Fprintf(g.streams.Out, "%s: %d files verified against the manifest, %d image archives against their image IDs; %s\n", args[0], v.Files, v.Images, sig)
			return nil
		},
	}
	c.Flags().StringVar(&pubPath, "pub", "", "ed25519 public key the signature must verify with")
	return c
}

func newBundleInspectCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "inspect FILE",
		Short: "List a bundle's components (without unpacking it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			r, err := bundle.Open(args[0])
			if err != nil {
				return err
			}
			defer r.Close()
			if g.format == report.JSON {
				g.writeJSON(r.Manifest)
				return nil
			}
			fmt.Fprintf(g.streams.Out, "bundle %s for %s\n", r.Manifest.Name, r.Manifest.Platform)
			g.printComponents(r.Manifest)
			return nil
		},
	}
	g.addOutputFlag(c)
	return c
}

func (g *globalOptions) printComponents(m *bundle.Manifest) {
	w := g.streams.Out
	fmt.Fprintf(w, "%-20s %-12s %-7s %-22s %10s  %-12s %s\n", "NAME", "VERSION", "KIND", "ROLES", "SIZE", "SHA256", "ORIGIN")
	for _, c := range m.Components {
		roles := strings.Join(c.Roles, ",")
		if roles == "" {
			roles = "all"
		}
		size, sum, origin := fmt.Sprintf("%.1f MiB", float64(c.Size)/(1<<20)), c.SHA256, c.Origin
		if len(sum) > 12 {
			sum = sum[:12]
		}
		if c.Kind == "absent" {
			size, sum, origin = "-", "-", "ABSENT: "+c.Absent
		}
		fmt.Fprintf(w, "%-20s %-12s %-7s %-22s %10s  %-12s %s\n", c.Name, c.Version, c.Kind, roles, size, sum, origin)
	}
	header := false
	for _, c := range m.Components {
		if c.ImageID == "" {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\n%-50s %-20s %s\n", "IMAGE", "ID", "SOURCE")
			header = true
		}
		source := "assembled: " + strings.TrimPrefix(c.Origin, "from-binary:")
		if c.ImageSource != "" {
			source = c.ImageSource + " (" + m.Platform + ": " + c.ImageDigest + ")"
		}
		fmt.Fprintf(w, "%-50s %-20s %s\n", c.ImageRef, shortDigest(c.ImageID), source)
	}
}

// shortDigest is a digest as people compare them: its algorithm and first 12 hex digits.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}

func newBundleDiffCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show what moving from bundle OLD to bundle NEW changes: components, versions, images",
		Long: `Compare two bundles' manifests (nothing is unpacked): components added and removed, versions replaced,
the same version rebuilt with other content, and images by reference and ID. 'privcloud upgrade plan' shows
the same between the bundle the cluster last ran and the one cluster.yaml names.`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			var ms [2]*bundle.Manifest
			for i, path := range args {
				r, err := bundle.Open(path)
				if err != nil {
					return err
				}
				ms[i] = r.Manifest
				r.Close()
			}
			changes := bundle.Diff(ms[0], ms[1])
			if g.format == report.JSON {
				g.writeJSON(map[string]any{"old": args[0], "new": args[1], "changes": changes})
				return nil
			}
			g.printBundleDiff(changes)
			return nil
		},
	}
	g.addOutputFlag(c)
	return c
}

// printBundleDiff shows a bundle diff as a table.
func (g *globalOptions) printBundleDiff(changes []bundle.Change) {
	w := g.streams.Out
	if len(changes) == 0 {
		fmt.Fprintln(w, "the bundles hold the same components")
		return
	}
	fmt.Fprintf(w, "%-24s %-7s %-8s %-12s %s\n", "COMPONENT", "KIND", "CHANGE", "FROM", "TO")
	for _, c := range changes {
		fmt.Fprintf(w, "%-24s %-7s %-8s %-12s %s\n", c.Name, c.Kind, c.Change, orDash(c.From), orDash(c.To))
		if c.FromImage != c.ToImage {
			fmt.Fprintf(w, "%-24s image: %s -> %s\n", "", orDash(c.FromImage), orDash(c.ToImage))
		}
	}
}

func newBundleSignCommand(g *globalOptions) *cobra.Command {
	var key string
	c := &cobra.Command{
		Use:   "sign FILE",
		Short: "Sign a bundle with an ed25519 key (writes FILE.sig)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			priv, err := bundle.ReadPrivateKey(key)
			if err != nil {
				return asUsageError(err)
			}
			if err := bundle.Sign(args[0], priv); err != nil {
				return err
			}
			fmt.Fprintf(g.streams.Out, "wrote %s.sig\n", args[0])
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "ed25519 private key (from 'privcloud bundle keygen')")
	_ = c.MarkFlagRequired("key")
	return c
}

func newBundleKeygenCommand(g *globalOptions) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "keygen",
		Short: "Make an ed25519 signing key (KEY, 0600) and its public key (KEY.pub)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := os.Stat(out); err == nil {
				return asUsageError(fmt.Errorf("%s exists: not overwriting a signing key", out))
			}
			if err := bundle.GenerateSigningKey(out); err != nil {
				return err
			}
			fmt.Fprintf(g.streams.Out, "wrote %s and %s.pub\n", out, out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "bundle-signing.key", "private key file to write")
	return c
}
