package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/internal/exitclass"
)

// VerifyError lists every problem found in a bundle.
type VerifyError struct {
	Bundle   string
	Problems []string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s does not verify:\n  - %s", e.Bundle, strings.Join(e.Problems, "\n  - "))
}

// ExitClass is PhaseFailed: verification is a check that failed.
func (e *VerifyError) ExitClass() exitclass.Class { return exitclass.PhaseFailed }

// Verification says what Verify checked.
type Verification struct {
	Manifest *Manifest
	Files    int
	Images   int  // image archives checked against their image IDs
	Signed   bool // a signature was present and verified
}

// Verify reads the whole bundle once: every path must stay inside the bundle's folder, every file must be
// listed in the manifest with its sha256 and size, every listed file must be present, and every component
// must point at a listed file. With keys, the detached signature (path + ".sig") must exist and verify with
// one of them; without (or only nil keys), a signature that exists is still checked against the manifest.
func Verify(path string, keys ...ed25519.PublicKey) (*Verification, error) {
	return VerifyExtract(path, "", nil, keys...)
}

// VerifyExtract is Verify that also writes the entries extract selects under dir in the same pass, each
// renamed into place only once its own sha256 and size are the manifest's (whatever else the bundle holds):
// a first install reads the archive once, not once to verify and again to unpack.
func VerifyExtract(path, dir string, extract func(name string) bool, keys ...ed25519.PublicKey) (*Verification, error) {
	r, err := Open(path) // refuses a manifest whose names or paths could leave their folder
	if err != nil {
		return nil, err
	}
	defer r.Close()
	m := r.Manifest
	ve := &VerifyError{Bundle: path}
	want := map[string]File{}
	for _, f := range m.Files {
		want[f.Path] = f
	}
	images := map[string]Component{} // archive path -> the image it must hold
	for _, c := range m.Components {
		if c.Kind == "absent" {
			continue
		}
		if c.ImageID != "" {
			images[c.Path] = c
		}
		if f, ok := want[c.Path]; !ok || f.SHA256 != c.SHA256 {
			ve.Problems = append(ve.Problems, fmt.Sprintf("component %s %s: its file %s is not listed with the same sha256", c.Name, c.Version, c.Path))
		}
	}
	seen := map[string]bool{}
	checkedImages := 0
	var checks sync.WaitGroup
	var imageProblems []*[]string // each image's, in the order of the archive
	for {
		name, content, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var refused *entryError
		if errors.As(err, &refused) {
			ve.Problems = append(ve.Problems, refused.problem)
			continue
		}
		if err != nil {
			ve.Problems = append(ve.Problems, err.Error())
			break
		}
		f, listed := want[name]
		switch {
		case !listed:
			ve.Problems = append(ve.Problems, fmt.Sprintf("%s: not in the manifest", name))
			continue
		case seen[name]:
			ve.Problems = append(ve.Problems, fmt.Sprintf("%s: appears twice", name))
		}
		seen[name] = true
		var dst string
		if extract != nil && extract(name) {
			if dst, err = inside(dir, name); err != nil {
				ve.Problems = append(ve.Problems, err.Error())
				continue
			}
		}
		var side io.Writer
		var ahead *handOff
		if img, ok := images[name]; ok {
			// the image's layers are unpacked and checked on a goroutine of its own while the archive reads on
			checkedImages++
			ahead = &handOff{ch: make(chan []byte, 64)}
			found := new([]string)
			imageProblems = append(imageProblems, found)
			checks.Add(1)
			go func(ahead *handOff) {
				defer checks.Done()
				for _, p := range checkImageArchive(ahead, img.ImageID) {
					*found = append(*found, fmt.Sprintf("%s (image %s): %s", name, img.ImageRef, p))
				}
				io.Copy(io.Discard, ahead) // a check that stopped early must not hold the reader up
			}(ahead)
			side = ahead
		}
		n, sum, err := readEntry(content, f, dst, side)
		if ahead != nil {
			close(ahead.ch)
		}
		if err != nil {
			ve.Problems = append(ve.Problems, fmt.Sprintf("%s: %v", name, err))
			break
		}
		if sum != f.SHA256 || n != f.Size {
			ve.Problems = append(ve.Problems, fmt.Sprintf("%s: content has sha256 %s and %d bytes, the manifest says %s and %d bytes", name, sum, n, f.SHA256, f.Size))
		}
	}
	checks.Wait()
	for _, found := range imageProblems {
		ve.Problems = append(ve.Problems, *found...)
	}
	var missing []string
	for p := range want {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	for _, p := range missing {
		ve.Problems = append(ve.Problems, fmt.Sprintf("%s: listed in the manifest but missing", p))
	}
	v := &Verification{Manifest: m, Files: len(seen), Images: checkedImages}
	signed, problem := checkSignature(path, r.ManifestBytes, keys)
	if problem != "" {
		ve.Problems = append(ve.Problems, problem)
	}
	v.Signed = signed
	if len(ve.Problems) > 0 {
		return v, ve
	}
	return v, nil
}

// readEntry reads one entry of the bundle, listed in the manifest as f, and returns its size and sha256; side,
// when not nil, sees every byte too. With dst, the entry is also written there, renamed into place only when
// its sha256 and size are f's.
func readEntry(content io.Reader, f File, dst string, side io.Writer) (n int64, sum string, err error) {
	h := sha256.New()
	writers := []io.Writer{h}
	if side != nil {
		writers = append(writers, side)
	}
	var tmp *os.File
	if dst != "" {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return 0, "", err
		}
		if tmp, err = os.CreateTemp(filepath.Dir(dst), ".extract-*"); err != nil {
			return 0, "", err
		}
		defer os.Remove(tmp.Name()) // once renamed, nothing is left to remove
		writers = append(writers, tmp)
	}
	n, err = io.Copy(io.MultiWriter(writers...), content)
	sum = hex.EncodeToString(h.Sum(nil))
	if tmp == nil {
		return n, sum, err
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil || sum != f.SHA256 || n != f.Size {
		return n, sum, err
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return n, sum, err
	}
	return n, sum, os.Rename(tmp.Name(), dst)
}

// handOff passes what is written to it to a reader on another goroutine, up to its channel's capacity of
// writes ahead: unlike io.Pipe, a write does not wait for the reader, so the two run at once. The writer
// closes ch when it is done.
type handOff struct {
	ch  chan []byte
	cur []byte
}

func (h *handOff) Write(p []byte) (int, error) {
	h.ch <- bytes.Clone(p) // the caller may reuse p as soon as Write returns
	return len(p), nil
}

func (h *handOff) Read(p []byte) (int, error) {
	for len(h.cur) == 0 {
		b, ok := <-h.ch
		if !ok {
			return 0, io.EOF
		}
		h.cur = b
	}
	n := copy(p, h.cur)
	h.cur = h.cur[n:]
	return n, nil
}

// VerifySignature checks only the signature, against the manifest already read: it is cheap enough for every
// run, where Verify reads the whole bundle. With keys, a signature by one of them is required.
func (r *Reader) VerifySignature(keys ...ed25519.PublicKey) error {
	if _, problem := checkSignature(r.f.Name(), r.ManifestBytes, keys); problem != "" {
		return &VerifyError{Bundle: r.f.Name(), Problems: []string{problem}}
	}
	return nil
}

// checkSignature checks bundle.sig against the manifest as stored, and reports whether one of keys signed it.
// Nil keys are ignored, so that a caller's optional key needs no special case.
func checkSignature(bundle string, manifest []byte, keys []ed25519.PublicKey) (signed bool, problem string) {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k ed25519.PublicKey) bool { return k == nil })
	sig, err := readSignature(bundle)
	switch {
	case errors.Is(err, os.ErrNotExist) && len(keys) > 0:
		return false, fmt.Sprintf("no signature: %s.sig does not exist", bundle)
	case errors.Is(err, os.ErrNotExist):
		return false, ""
	case err != nil:
		return false, err.Error()
	}
	sum := sha256.Sum256(manifest)
	if hex.EncodeToString(sum[:]) != sig.ManifestSHA256 {
		return false, "the signature is for another manifest"
	}
	if len(keys) == 0 {
		return false, ""
	}
	for _, k := range keys {
		// ed25519.Verify panics on a key of the wrong size
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, sum[:], sig.Signature) {
			return true, ""
		}
	}
	if len(keys) == 1 {
		return false, "the signature does not verify with the given public key"
	}
	return false, fmt.Sprintf("the signature does not verify with any of the %d given public keys", len(keys))
}

// signature is the detached signature file.
type signature struct {
	Algorithm      string `json:"algorithm"`
	ManifestSHA256 string `json:"manifestSha256"`
	Signature      []byte `json:"signature"`
}

func readSignature(bundle string) (*signature, error) {
	data, err := os.ReadFile(bundle + ".sig")
	if err != nil {
		return nil, err
	}
	var s signature
	if err := json.Unmarshal(data, &s); err != nil || s.Algorithm != "ed25519" {
		return nil, fmt.Errorf("%s.sig is not a privcloud ed25519 signature", bundle)
	}
	return &s, nil
}

// Sign writes path.sig: an ed25519 signature over the sha256 of the bundle's manifest, which lists the
// sha256 of every file, so the signature covers the whole bundle.
func Sign(path string, key ed25519.PrivateKey) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(r.ManifestBytes)
	r.Close()
	data, err := json.MarshalIndent(signature{Algorithm: "ed25519", ManifestSHA256: hex.EncodeToString(sum[:]),
		Signature: ed25519.Sign(key, sum[:])}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path+".sig", data, 0o644)
}

// GenerateSigningKey writes a new ed25519 private key (PKCS#8 PEM, 0600) and its public key (PEM) next to it.
func GenerateSigningKey(path string) error {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// ReadPrivateKey reads an ed25519 private key written by GenerateSigningKey.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 key", path)
	}
	return priv, nil
}

// ReadPublicKey reads an ed25519 public key written by GenerateSigningKey.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 public key", path)
	}
	return pub, nil
}

func readPEM(path string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return block, nil
}
