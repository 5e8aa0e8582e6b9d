// Package benchutil holds what the side-by-side benchmarks share: timing a command and rewriting a section of
// BENCHMARKS.md.
package benchutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Median runs script with bash in dir n times and returns the median wall time. Before each run it flushes
// dirty pages, so one run's writes are not the next one's fsync. A failing run is an error: no number is
// reported for work that did not happen.
func Median(n int, dir string, env []string, script string) (float64, error) {
	var times []float64
	for range n {
		if err := exec.Command("sync").Run(); err != nil {
			return 0, err
		}
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("%s: %v\n%s", script, err, out.String())
		}
		times = append(times, time.Since(start).Seconds())
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// ReplaceSection puts md between the markers <!-- bench:NAME:begin --> and <!-- bench:NAME:end --> of path.
func ReplaceSection(path, name, md string) error {
	begin, end := "<!-- bench:"+name+":begin -->", "<!-- bench:"+name+":end -->"
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s section", path, begin, end)
	}
	return os.WriteFile(path, []byte(s[:i+len(begin)]+"\n"+md+s[j:]), 0o644)
}

// Ratio describes other against base: "1.00x", "2.50x slower", "1.20x faster".
func Ratio(other, base float64) string {
	switch {
	case other == base:
		return "1.00x"
	case other > base:
		return fmt.Sprintf("%.2fx slower", other/base)
	}
	return fmt.Sprintf("%.2fx faster", base/other)
}
