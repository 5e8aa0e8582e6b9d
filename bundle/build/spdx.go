package build

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/privcloud/privcloud/bundle"
)

// spdx writes an SPDX 2.3 document: a package per component and, for Go binaries, a package per module
// the binary was built from (what `go version -m` reports).
func spdx(m *bundle.Manifest, stage string) ([]byte, error) {
	type checksum struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"checksumValue"`
	}
	type ref struct {
		Category string `json:"referenceCategory"`
		Type     string `json:"referenceType"`
		Locator  string `json:"referenceLocator"`
	}
	type pkg struct {
		SPDXID           string     `json:"SPDXID"`
		Name             string     `json:"name"`
		VersionInfo      string     `json:"versionInfo,omitempty"`
		DownloadLocation string     `json:"downloadLocation"`
		Checksums        []checksum `json:"checksums,omitempty"`
		ExternalRefs     []ref      `json:"externalRefs,omitempty"`
		Comment          string     `json:"comment,omitempty"`
	}
	type rel struct {
		Element string `json:"spdxElementId"`
		Type    string `json:"relationshipType"`
		Related string `json:"relatedSpdxElement"`
	}
	doc := struct {
		SPDXVersion       string `json:"spdxVersion"`
		DataLicense       string `json:"dataLicense"`
		SPDXID            string `json:"SPDXID"`
		Name              string `json:"name"`
		DocumentNamespace string `json:"documentNamespace"`
		CreationInfo      struct {
			Creators []string `json:"creators"`
		} `json:"creationInfo"`
		Packages      []pkg `json:"packages"`
		Relationships []rel `json:"relationships"`
	}{SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT", Name: "privcloud-bundle-" + m.Name}
	doc.CreationInfo.Creators = []string{"Tool: privcloud"}
	var digests []string
	for _, f := range m.Files {
		digests = append(digests, f.SHA256)
	}
	doc.DocumentNamespace = "https://privcloud.io/spdx/" + m.Name + "-" + cacheKey(digests...)
	for i, c := range m.Components {
		id := fmt.Sprintf("SPDXRef-Component-%d", i)
		p := pkg{SPDXID: id, Name: c.Name, VersionInfo: c.Version, DownloadLocation: "NOASSERTION", Comment: c.Origin}
		if c.SHA256 != "" {
			p.Checksums = []checksum{{"SHA256", c.SHA256}}
		}
		if c.ImageID != "" {
			p.Comment += "; image id " + c.ImageID
		}
		if c.ImageSource != "" { // where a pulled image came from, as a package URL of the oci type
			repo, _, _ := strings.Cut(c.ImageSource, "@")
			p.DownloadLocation = c.ImageSource
			p.ExternalRefs = append(p.ExternalRefs, ref{"PACKAGE-MANAGER", "purl", fmt.Sprintf("pkg:oci/%s@%s?repository_url=%s&arch=%s",
				path.Base(repo), url.QueryEscape(c.ImageDigest), url.QueryEscape(repo), url.QueryEscape(arch(m.Platform)))})
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, rel{"SPDXRef-DOCUMENT", "DESCRIBES", id})
		if c.Kind != "binary" {
			continue
		}
		mods, err := goModules(filepath.Join(stage, c.Path))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		for j, mod := range mods {
			mid := fmt.Sprintf("%s-Module-%d", id, j)
			doc.Packages = append(doc.Packages, pkg{SPDXID: mid, Name: mod.Path, VersionInfo: mod.Version, DownloadLocation: "NOASSERTION",
				ExternalRefs: []ref{{"PACKAGE-MANAGER", "purl", "pkg:golang/" + mod.Path + "@" + mod.Version}}})
			doc.Relationships = append(doc.Relationships, rel{id, "CONTAINS", mid})
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

func arch(platform string) string {
	_, a, _ := strings.Cut(platform, "/")
	return a
}

// goModules lists the main module and dependencies recorded in a Go binary; other binaries have none.
func goModules(path string) ([]module, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, nil // not a Go binary (busybox, say): nothing to list
	}
	out := []module{{info.Main.Path, info.Main.Version}}
	for _, d := range info.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		out = append(out, module{d.Path, d.Version})
	}
	return out, nil
}

type module struct{ Path, Version string }
