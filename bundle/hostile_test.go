package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// entry is one tar entry of a hand-made archive: a regular file unless typ says otherwise.
type entry struct {
	name, body, link string
	typ              byte
	unlisted         bool // left out of the manifest's files
}

// hostile writes a tar+zstd bundle by hand, manifest first, as an attacker could: nothing of Build's care is
// applied. Regular entries are listed in m's files with their true sha256 unless unlisted.
func hostile(t *testing.T, m Manifest, entries ...entry) string {
	t.Helper()
	if m.Name == "" {
		m.Name = "hostile"
	}
	for _, e := range entries {
		if e.typ == 0 && !e.unlisted {
			sum := sha256.Sum256([]byte(e.body))
			m.Files = append(m.Files, File{Path: e.name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(e.body))})
		}
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hostile.tar.zst")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := zstd.NewWriter(f)
	tw := tar.NewWriter(zw)
	put := func(hdr *tar.Header, body string) {
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	put(&tar.Header{Name: ManifestName, Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg}, string(manifest))
	for _, e := range entries {
		hdr, body := &tar.Header{Name: e.name, Mode: 0o755, Typeflag: tar.TypeReg, Size: int64(len(e.body))}, e.body
		if e.typ != 0 {
			hdr, body = &tar.Header{Name: e.name, Mode: 0o777, Typeflag: e.typ, Linkname: e.link}, ""
		}
		put(hdr, body)
	}
	for _, c := range []interface{ Close() error }{tw, zw, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestCheckEntryName(t *testing.T) {
	for _, ok := range []string{"manifest.json", "bin/etcd/v3.6.5/etcd", "images/pause-3.10.tar", "a..b", "..a/b"} {
		if err := CheckEntryName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/../../x", "a/..", "/etc/x", "/", `bin\x`, `..\x`, "./x", "a//b", "a/./b", "a/"} {
		if err := CheckEntryName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestVerifyRefusesWhatCouldLeaveTheBundle(t *testing.T) {
	binary := func(name, version, path string) Component {
		sum := sha256.Sum256([]byte("x"))
		return Component{Name: name, Version: version, Kind: "binary", Path: path, SHA256: hex.EncodeToString(sum[:]), Size: 1}
	}
	cases := map[string]struct {
		bundle string
		want   string
	}{
		"parent entry, listed":     {hostile(t, Manifest{}, entry{name: "../x", body: "x"}), `manifest file "../x" contains ".."`},
		"parent entry, unlisted":   {hostile(t, Manifest{}, entry{name: "../x", body: "x", unlisted: true}), `entry "../x" contains ".."`},
		"deep parent entry":        {hostile(t, Manifest{}, entry{name: "bin/../../x", body: "x"}), `"bin/../../x" contains ".."`},
		"absolute entry, listed":   {hostile(t, Manifest{}, entry{name: "/etc/x", body: "x"}), `manifest file "/etc/x" is an absolute path`},
		"absolute entry, unlisted": {hostile(t, Manifest{}, entry{name: "/etc/x", body: "x", unlisted: true}), `entry "/etc/x" is an absolute path`},
		"backslash entry":          {hostile(t, Manifest{}, entry{name: `..\x`, body: "x", unlisted: true}), `contains a backslash`},
		"symlink entry":            {hostile(t, Manifest{}, entry{name: "bin/x", typ: tar.TypeSymlink, link: "/etc/passwd"}), `entry "bin/x" is not a regular file`},
		"hardlink entry":           {hostile(t, Manifest{}, entry{name: "bin/x", typ: tar.TypeLink, link: "/etc/passwd"}), `entry "bin/x" is not a regular file`},
		"directory entry":          {hostile(t, Manifest{}, entry{name: "bin/", typ: tar.TypeDir}), `entry "bin/" is not a regular file`},
		"component named ../../etc": {hostile(t, Manifest{Components: []Component{binary("../../etc", "1", "bin/x")}}, entry{name: "bin/x", body: "x"}),
			`component name "../../etc": only letters`},
		"component version ../..": {hostile(t, Manifest{Components: []Component{binary("etcd", "../..", "bin/x")}}, entry{name: "bin/x", body: "x"}),
			`component "etcd" version "../..": only letters`},
		"component path ../x": {hostile(t, Manifest{Components: []Component{binary("etcd", "1", "../x")}}, entry{name: "bin/x", body: "x"}),
			`component "etcd" path "../x" contains ".."`},
		"bundle named ..": {hostile(t, Manifest{Name: ".."}, entry{name: "bin/x", body: "x"}), `manifest name "..": only letters`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(tc.bundle)
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want a *VerifyError with %q, got %v", tc.want, err)
			}
		})
	}
}

// A symlink does not hide what follows it: every refused entry is listed, not only the first.
func TestVerifyListsEveryRefusedEntry(t *testing.T) {
	b := hostile(t, Manifest{},
		entry{name: "link", typ: tar.TypeSymlink, link: "/etc"},
		entry{name: "../x", body: "x", unlisted: true},
		entry{name: "bin/ok", body: "ok"})
	_, err := Verify(b)
	for _, want := range []string{`entry "link" is not a regular file`, `entry "../x" contains ".."`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "bin/ok") {
		t.Errorf("the sound entry after them was not read: %v", err)
	}
}

// Open serves every caller that builds paths from the manifest (the phases' re-run short-cut among them): it
// must refuse a hostile one as Verify does.
func TestOpenRefusesAHostileManifest(t *testing.T) {
	b := hostile(t, Manifest{Components: []Component{{Name: "../../etc", Version: "1", Kind: "absent"}}})
	if r, err := Open(b); err == nil {
		r.Close()
		t.Fatal("a manifest with a component named ../../etc was opened")
	}
}

func TestExtractWritesNothingOutsideItsFolder(t *testing.T) {
	cases := map[string][]entry{
		"parent, listed":       {{name: "bin/ok", body: "ok"}, {name: "../x", body: "x"}},
		"parent, unlisted":     {{name: "../x", body: "x", unlisted: true}},
		"deep parent":          {{name: "bin/../../x", body: "x"}},
		"absolute, listed":     {{name: "/x", body: "x"}},
		"absolute, unlisted":   {{name: "/x", body: "x", unlisted: true}},
		"symlink then through": {{name: "bin", typ: tar.TypeSymlink, link: ".."}, {name: "bin/x", body: "x"}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			b := hostile(t, Manifest{}, entries...)
			dir := filepath.Join(root, "out")
			if _, err := Extract(b, dir, func(string) bool { return true }); err == nil {
				t.Error("a hostile bundle was extracted without an error")
			}
			if _, err := VerifyExtract(b, dir, func(string) bool { return true }); err == nil {
				t.Error("a hostile bundle was verified and extracted without an error")
			}
			all, _ := os.ReadDir(root)
			for _, e := range all {
				if e.Name() != "out" {
					t.Errorf("%s was written outside %s", filepath.Join(root, e.Name()), dir)
				}
			}
		})
	}
}

func TestInsideKeepsToItsFolder(t *testing.T) {
	dir := t.TempDir()
	if got, err := inside(dir, "bin/x"); err != nil || got != filepath.Join(dir, "bin", "x") {
		t.Errorf("bin/x: %s %v", got, err)
	}
	for _, bad := range []string{"../x", "/etc/x", "a/../../x", ".", ""} {
		if got, err := inside(dir, bad); err == nil {
			t.Errorf("%q goes to %s", bad, got)
		}
	}
}

func TestAnyListedKeyVerifies(t *testing.T) {
	out := valid(t)
	pub, priv, _ := ed25519.GenerateKey(nil)
	other1, _, _ := ed25519.GenerateKey(nil)
	other2, _, _ := ed25519.GenerateKey(nil)
	if err := Sign(out, priv); err != nil {
		t.Fatal(err)
	}
	if v, err := Verify(out, other1, pub); err != nil || !v.Signed {
		t.Errorf("signed by the second of two keys: %v", err)
	}
	if _, err := Verify(out, other1, other2); err == nil || !strings.Contains(err.Error(), "does not verify with any of the 2 given public keys") {
		t.Errorf("signed by neither key: %v", err)
	}
	if _, err := Verify(out, ed25519.PublicKey("short")); err == nil {
		t.Error("a malformed key verified")
	}
	r, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.VerifySignature(other2, pub); err != nil {
		t.Errorf("VerifySignature with the signer's key: %v", err)
	}
	if err := r.VerifySignature(other1); err == nil || !strings.Contains(err.Error(), out) {
		t.Errorf("VerifySignature with another key must fail naming the bundle: %v", err)
	}
	os.Remove(out + ".sig")
	if err := r.VerifySignature(pub); err == nil || !strings.Contains(err.Error(), "no signature: "+out+".sig does not exist") {
		t.Errorf("VerifySignature of an unsigned bundle: %v", err)
	}
	if err := r.VerifySignature(); err != nil {
		t.Errorf("without keys, an unsigned bundle passes: %v", err)
	}
}
