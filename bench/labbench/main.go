// Command labbench measures the local lab: the time to the first image (a cold debootstrap), the time until 3
// and 10 hosts answer SSH with verified host keys, and the memory an idle host takes. `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/privcloud/privcloud/bench/benchutil"
	"github.com/privcloud/privcloud/e2e/lab"
)

func main() {
	update := flag.String("update", "", "BENCHMARKS.md to update between the lab markers (empty: print only)")
	cold := flag.Bool("cold", true, "also build an image from nothing (a full debootstrap, about a minute)")
	flag.Parse()
	home, _ := os.UserHomeDir()
	cache := filepath.Join(home, ".cache/privcloud/lab")
	var w strings.Builder
	fmt.Fprintf(&w, "Measured %s on this machine (2 cores, Debian packages from the mirror the machine's apt uses).\n\n", time.Now().UTC().Format("2006-01-02"))
	w.WriteString("| what | time |\n|---|---:|\n")
	if *cold {
		tmp, err := os.MkdirTemp("/var/tmp", "privcloud-labbench-")
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		if _, err := lab.EnsureImage(tmp, io.Discard); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(&w, "| first image, from nothing (debootstrap + lab customisation) | %.1f s |\n", time.Since(start).Seconds())
		os.RemoveAll(tmp)
	}
	start := time.Now()
	image, err := lab.EnsureImage(cache, io.Discard)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(&w, "| image, cached | %.2f s |\n", time.Since(start).Seconds())

	var mem []lab.Memory
	for _, n := range []int{3, 10} {
		l, err := lab.Open(filepath.Join(os.TempDir(), fmt.Sprintf("privcloud-labbench-%d", n)), "/var/tmp/privcloud-labbench", io.Discard)
		if err != nil {
			log.Fatal(err)
		}
		start := time.Now()
		if err := l.Up(context.Background(), image, n); err != nil {
			l.Down()
			log.Fatal(err)
		}
		fmt.Fprintf(&w, "| %d hosts answering SSH with verified host keys, from `lab up` | %.2f s |\n", n, time.Since(start).Seconds())
		if n == 10 {
			time.Sleep(20 * time.Second) // let boot-time work settle: this is an idle host
			if mem, err = l.MemoryUse(); err != nil {
				l.Down()
				log.Fatal(err)
			}
		}
		start = time.Now()
		if err := l.Down(); err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(&w, "| %d hosts taken down (processes, mounts, namespaces, cgroups) | %.2f s |\n", n, time.Since(start).Seconds())
	}
	var rss, pageCache uint64
	for _, m := range mem {
		rss += m.RSS
		pageCache += m.Cache
	}
	n := uint64(len(mem))
	fmt.Fprintf(&w, "\nMemory of an idle host (mean of 10, 20 s after boot, from its memory cgroup): %.1f MiB of process memory (rss), plus %.1f MiB of page cache charged to it.\n",
		float64(rss/n)/(1<<20), float64(pageCache/n)/(1<<20))
	fmt.Print(w.String())
	if *update != "" {
		if err := benchutil.ReplaceSection(*update, "lab", w.String()); err != nil {
			log.Fatal(err)
		}
	}
}
