package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// checkImageArchive reads a docker-archive as it streams by and says how it differs from the image whose
// ID (its config's digest) the manifest records: the config must have that digest and every layer must
// unpack to the content its diff_id names. The file's own sha256 proves the archive is the one packed; this
// proves it is the image that was pulled or assembled.
func checkImageArchive(r io.Reader, wantID string) []string {
	type entry struct {
		sha, unpackedSHA string
		small            []byte // JSON documents: manifest.json and the config
	}
	entries := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return []string{"not a docker-archive: " + err.Error()}
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		br := bufio.NewReader(tr)
		raw := sha256.New()
		var e entry
		if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
			gz, err := gzip.NewReader(io.TeeReader(br, raw))
			if err != nil {
				return []string{hdr.Name + ": " + err.Error()}
			}
			unpacked := sha256.New()
			if _, err := io.Copy(unpacked, gz); err != nil {
				return []string{hdr.Name + ": " + err.Error()}
			}
			e.unpackedSHA = hex.EncodeToString(unpacked.Sum(nil))
		}
		var small bytes.Buffer
		w := io.Writer(raw)
		if e.unpackedSHA == "" && hdr.Size < 4<<20 {
			w = io.MultiWriter(raw, &small)
		}
		if _, err := io.Copy(w, br); err != nil {
			return []string{hdr.Name + ": " + err.Error()}
		}
		e.sha, e.small = hex.EncodeToString(raw.Sum(nil)), small.Bytes()
		if e.unpackedSHA == "" {
			e.unpackedSHA = e.sha
		}
		entries[hdr.Name] = e
	}
	var index []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(entries["manifest.json"].small, &index); err != nil || len(index) != 1 {
		return []string{"not a docker-archive of one image: its manifest.json is missing or unreadable"}
	}
	cfgEntry, ok := entries[index[0].Config]
	if !ok {
		return []string{"its config " + index[0].Config + " is missing"}
	}
	if got := "sha256:" + cfgEntry.sha; got != wantID {
		return []string{fmt.Sprintf("it holds the image %s, the manifest records %s", got, wantID)}
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfgEntry.small, &cfg); err != nil {
		return []string{"its config is unreadable: " + err.Error()}
	}
	if len(cfg.RootFS.DiffIDs) != len(index[0].Layers) {
		return []string{fmt.Sprintf("it has %d layers, its config names %d", len(index[0].Layers), len(cfg.RootFS.DiffIDs))}
	}
	var problems []string
	for i, l := range index[0].Layers {
		e, ok := entries[l]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("layer %d (%s) is missing", i+1, l))
		case "sha256:"+e.unpackedSHA != cfg.RootFS.DiffIDs[i]:
			problems = append(problems, fmt.Sprintf("layer %d unpacks to sha256:%s, the image's config says %s", i+1, e.unpackedSHA, cfg.RootFS.DiffIDs[i]))
		}
	}
	return problems
}
