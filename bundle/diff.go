package bundle

import (
	"slices"
	"sort"
)

// Change is how one component differs between two bundles.
type Change struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Change is added, removed, version (one version replaced by another), rebuilt (same version, other
	// content), absent (recorded as missing in the newer bundle) or present (no longer missing).
	Change string `json:"change"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	// FromImage and ToImage are an image's reference and ID on each side.
	FromImage string `json:"fromImage,omitempty"`
	ToImage   string `json:"toImage,omitempty"`
}

// Diff lists what changes from bundle old to bundle new, by component name: a name with one version on each
// side is a version change; with several (a bundle holding two Kubernetes releases for an upgrade), each
// version added or removed is listed. The same version with other content is a rebuild.
func Diff(old, new *Manifest) []Change {
	type side struct{ old, new map[string]Component }
	byName := map[string]*side{}
	for i, m := range []*Manifest{old, new} {
		for _, c := range m.Components {
			s := byName[c.Name]
			if s == nil {
				s = &side{map[string]Component{}, map[string]Component{}}
				byName[c.Name] = s
			}
			if i == 0 {
				s.old[c.Version] = c
			} else {
				s.new[c.Version] = c
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Change
	for _, n := range names {
		s := byName[n]
		var gone, came []Component
		for v, c := range s.old {
			nc, ok := s.new[v]
			switch {
			case !ok:
				gone = append(gone, c)
			case (c.Kind == "absent") != (nc.Kind == "absent"):
				out = append(out, changeOf(map[bool]string{true: "absent", false: "present"}[nc.Kind == "absent"], c, nc))
			case c.SHA256 != nc.SHA256 || c.ImageID != nc.ImageID || c.ImageRef != nc.ImageRef:
				out = append(out, changeOf("rebuilt", c, nc))
			}
		}
		for v, c := range s.new {
			if _, ok := s.old[v]; !ok {
				came = append(came, c)
			}
		}
		if len(gone) == 1 && len(came) == 1 && len(s.old) == 1 && len(s.new) == 1 {
			out = append(out, changeOf("version", gone[0], came[0]))
			continue
		}
		for _, c := range gone {
			out = append(out, changeOf("removed", c, Component{}))
		}
		for _, c := range came {
			out = append(out, changeOf("added", Component{}, c))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].From+out[i].To < out[j].From+out[j].To
	})
	return slices.Clip(out)
}

func changeOf(what string, from, to Component) Change {
	c := Change{Name: from.Name, Kind: from.Kind, Change: what, From: from.Version, To: to.Version,
		FromImage: imageOf(from), ToImage: imageOf(to)}
	if c.Name == "" {
		c.Name, c.Kind = to.Name, to.Kind
	}
	if to.Kind != "" {
		c.Kind = to.Kind
	}
	return c
}

// imageOf is an image's reference with its ID, when it has one.
func imageOf(c Component) string {
	switch {
	case c.ImageRef == "":
		return ""
	case c.ImageID == "":
		return c.ImageRef
	}
	return c.ImageRef + " (" + c.ImageID + ")"
}
