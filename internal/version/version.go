// Package version reports what privcloud binary is running. The Makefile stamps Version, Commit and Date
// with -ldflags; a plain `go build` falls back to the module and VCS data Go records in the binary.
package version

import (
	"runtime"
	"runtime/debug"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// Stamped at build time with -X.
var (
	Version = ""
	Commit  = ""
	Date    = ""
)

// Info describes the running binary.
type Info struct {
	Version                  string `json:"version"`
	Commit                   string `json:"commit,omitempty"`
	Date                     string `json:"date,omitempty"`
	GoVersion                string `json:"goVersion"`
	Platform                 string `json:"platform"`
	APIVersion               string `json:"apiVersion"`
	DefaultKubernetesVersion string `json:"defaultKubernetesVersion"`
}

// Get returns the binary's version information.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Date: Date, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, APIVersion: api.APIVersion,
		DefaultKubernetesVersion: api.DefaultKubernetesVersion}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && info.Commit == "":
				info.Commit = s.Value
			case s.Key == "vcs.time" && info.Date == "":
				info.Date = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}
