// Command clusterbench measures `privcloud init` in the lab from the lab bundle: on 1 host and on 3 hosts,
// the wall time of each phase from the run's own JSON events, the whole run, and a no-op re-run. `make bench`
// runs it after `make bundle`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/privcloud/privcloud/bench/benchutil"
	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/report"
)

// measurement is one init run: per-phase wall time in order, the total, and the no-op re-run.
type measurement struct {
	phases      []string
	ms          map[string]float64
	total, noop time.Duration
	noopChanges int
}

func main() {
	privcloud := flag.String("privcloud", "_output/privcloud", "privcloud binary")
	bundlePath := flag.String("bundle", "_output/lab-bundle.tar.zst", "the lab bundle (make bundle)")
	update := flag.String("update", "", "BENCHMARKS.md to update between the cluster markers (empty: print only)")
	flag.Parse()
	bin, err := filepath.Abs(*privcloud)
	if err != nil {
		log.Fatal(err)
	}
	bundle, err := filepath.Abs(*bundlePath)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(bundle); err != nil {
		log.Fatalf("%v: build it with 'make bundle'", err)
	}
	home, _ := os.UserHomeDir()
	image, err := lab.EnsureImage(filepath.Join(home, ".cache/privcloud/lab"), io.Discard)
	if err != nil {
		log.Fatal(err)
	}
	sizes := []int{1, 3}
	results := map[int]measurement{}
	for _, n := range sizes {
		m, err := measure(bin, bundle, image, n)
		if err != nil {
			log.Fatalf("%d hosts: %v", n, err)
		}
		results[n] = m
	}

	var w strings.Builder
	fmt.Fprintf(&w, "Measured %s on this machine (2 cores), `privcloud init` from the lab bundle on fresh lab hosts (h1 control plane with etcd, the others workers), add-ons included; wall time per phase from the run's JSON events.\n\n",
		time.Now().UTC().Format("2006-01-02"))
	w.WriteString("| phase | 1 node | 3 nodes |\n|---|---:|---:|\n")
	for _, p := range results[3].phases {
		fmt.Fprintf(&w, "| %s | %s | %s |\n", p, seconds(results[1].ms, p), seconds(results[3].ms, p))
	}
	fmt.Fprintf(&w, "| **init, whole run (nodes Ready, add-ons ready)** | **%.1f s** | **%.1f s** |\n", results[1].total.Seconds(), results[3].total.Seconds())
	fmt.Fprintf(&w, "| **no-op re-run** (changes: %d and %d) | **%.1f s** | **%.1f s** |\n", results[1].noopChanges, results[3].noopChanges,
		results[1].noop.Seconds(), results[3].noop.Seconds())
	fmt.Print(w.String())
	if *update != "" {
		if err := benchutil.ReplaceSection(*update, "cluster", w.String()); err != nil {
			log.Fatal(err)
		}
	}
}

func seconds(ms map[string]float64, phase string) string {
	v, ok := ms[phase]
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f s", v/1000)
}

// measure brings up n fresh lab hosts, runs init twice and takes the hosts down again.
func measure(bin, bundle, image string, n int) (m measurement, err error) {
	dir, err := os.MkdirTemp("", "privcloud-clusterbench-")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(dir)
	l, err := lab.Open(dir, "/var/tmp/privcloud-clusterbench", io.Discard)
	if err != nil {
		return m, err
	}
	l.Bundle = bundle
	defer func() {
		if derr := l.Down(); err == nil {
			err = derr
		}
	}()
	if err := l.Up(context.Background(), image, n); err != nil {
		return m, err
	}
	start := time.Now()
	events, err := initRun(bin, l.ClusterConfig())
	if err != nil {
		return m, err
	}
	m.total = time.Since(start)
	m.ms = map[string]float64{}
	for _, e := range events {
		if e.Host == "" && e.Phase != "" && e.DurationMS != nil {
			m.phases = append(m.phases, e.Phase)
			m.ms[e.Phase] = *e.DurationMS
		}
	}
	start = time.Now()
	events, err = initRun(bin, l.ClusterConfig())
	if err != nil {
		return m, err
	}
	m.noop = time.Since(start)
	for _, e := range events {
		if e.Summary != nil {
			m.noopChanges = e.Summary.Changed
		}
	}
	return m, nil
}

// initRun runs privcloud init with JSON events and returns them; a failed run returns its events as the error.
func initRun(bin, config string) ([]report.Event, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command(bin, "init", "-f", config, "-o", "json")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	runErr := cmd.Run()
	var events []report.Event
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e report.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			events = append(events, e)
		}
	}
	if runErr != nil {
		return nil, fmt.Errorf("privcloud init: %v\n%s%s", runErr, out.String(), stderr.String())
	}
	return events, nil
}
