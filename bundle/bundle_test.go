package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// valid writes a well-formed bundle: a few files, each listed with its sha256. Extra entries make a bundle
// with another manifest.
func valid(t *testing.T, extra ...entry) string {
	t.Helper()
	return hostile(t, Manifest{Name: "test"}, append([]entry{
		{name: "bin/tool/1.0/tool", body: "#!/bin/sh\necho tool\n"},
		{name: "bin/hello/v0.0.0/hello", body: "hello"},
	}, extra...)...)
}

// repack rewrites a bundle with edit applied to each entry (nil result drops it) and extra entries added.
func repack(t *testing.T, in string, edit func(name string, data []byte) []byte, extra map[string][]byte) string {
	t.Helper()
	r, err := Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := filepath.Join(t.TempDir(), "tampered.tar.zst")
	f, _ := os.Create(out)
	zw, _ := zstd.NewWriter(f)
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	put(ManifestName, r.ManifestBytes)
	for {
		name, content, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		data, _ := io.ReadAll(content)
		if data = edit(name, data); data != nil {
			put(name, data)
		}
	}
	for n, d := range extra {
		put(n, d)
	}
	tw.Close()
	zw.Close()
	f.Close()
	return out
}

func TestTamperingIsCaught(t *testing.T) {
	out := valid(t)
	if _, err := Verify(out); err != nil {
		t.Fatalf("the untouched bundle must verify: %v", err)
	}
	keep := func(_ string, d []byte) []byte { return d }
	cases := map[string]struct {
		bundle string
		want   string
	}{
		"flipped byte": {repack(t, out, func(n string, d []byte) []byte {
			if n == "bin/tool/1.0/tool" {
				d = append([]byte(nil), d...)
				d[3] ^= 0x01
			}
			return d
		}, nil), "bin/tool/1.0/tool: content has sha256"},
		"missing file": {repack(t, out, func(n string, d []byte) []byte {
			if n == "bin/hello/v0.0.0/hello" {
				return nil
			}
			return d
		}, nil), "bin/hello/v0.0.0/hello: listed in the manifest but missing"},
		"extra file": {repack(t, out, keep, map[string][]byte{"bin/evil": []byte("x")}), "bin/evil: not in the manifest"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(tc.bundle, nil)
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}

func TestSignatures(t *testing.T) {
	out := valid(t)
	keyPath := filepath.Join(t.TempDir(), "signing.key")
	if err := GenerateSigningKey(keyPath); err != nil {
		t.Fatal(err)
	}
	priv, err := ReadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublicKey(keyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %o", fi.Mode().Perm())
	}
	if _, err := Verify(out, pub); err == nil || !strings.Contains(err.Error(), "no signature") {
		t.Fatalf("requiring a signature on an unsigned bundle: %v", err)
	}
	if err := Sign(out, priv); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(out, pub)
	if err != nil || !v.Signed {
		t.Fatalf("signed bundle: %v %+v", err, v)
	}
	otherPub, _, _ := ed25519.GenerateKey(nil)
	if _, err := Verify(out, otherPub); err == nil || !strings.Contains(err.Error(), "does not verify with the given public key") {
		t.Errorf("another key must not verify: %v", err)
	}
	// a signature moved onto another bundle (another manifest) is refused, with or without a key
	other := valid(t, entry{name: "bin/fetched/2/fetched", body: "one more component"})
	data, _ := os.ReadFile(out + ".sig")
	os.WriteFile(other+".sig", data, 0o644)
	for _, key := range []ed25519.PublicKey{pub, nil} {
		if _, err := Verify(other, key); err == nil || !strings.Contains(err.Error(), "signature is for another manifest") {
			t.Errorf("a signature of another bundle (key %v): %v", key != nil, err)
		}
	}
}

// VerifyExtract unpacks what it is asked for while it verifies, each file only once its own sha256 is the
// manifest's, executable, and nothing half-written.
func TestVerifyExtractUnpacksInOnePass(t *testing.T) {
	out := valid(t)
	dir := t.TempDir()
	if _, err := VerifyExtract(out, dir, func(name string) bool { return name == "bin/tool/1.0/tool" }); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "bin/tool/1.0/tool"))
	if data, _ := os.ReadFile(filepath.Join(dir, "bin/tool/1.0/tool")); err != nil || fi.Mode().Perm() != 0o755 || string(data) != "#!/bin/sh\necho tool\n" {
		t.Errorf("the selected file: %v %v %q", err, fi, data)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin/hello")); !os.IsNotExist(err) {
		t.Errorf("a file not selected was unpacked: %v", err)
	}

	tampered := repack(t, out, func(name string, d []byte) []byte {
		if name == "bin/hello/v0.0.0/hello" {
			return []byte("HELLO")
		}
		return d
	}, nil)
	dir = t.TempDir()
	if _, err := VerifyExtract(tampered, dir, func(string) bool { return true }); err == nil || !strings.Contains(err.Error(), "bin/hello/v0.0.0/hello: content has sha256") {
		t.Fatalf("a tampered entry: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin/hello/v0.0.0/hello")); !os.IsNotExist(err) {
		t.Errorf("the tampered entry was put in place: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "bin/hello/v0.0.0/.extract-*"))
	if _, err := os.Stat(filepath.Join(dir, "bin/tool/1.0/tool")); err != nil || len(left) > 0 {
		t.Errorf("the intact entry is missing (%v) or temporary files were left: %v", err, left)
	}
}
