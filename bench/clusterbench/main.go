// Command clusterbench measures `privcloud init` in the lab from the lab bundle: on 1, 3, 10 and 20 hosts,
// the wall time of each phase from the run's own JSON events, the whole run, privcloud's peak memory, and a
// no-op re-run; and the bundle's distribution to 3 hosts against plain scp of the same files. `make bench`
// runs it after `make bundle`.
//
// A lab of more than 5 hosts needs more inotify instances than a machine's default (every host's systemd,
// journald, containerd and kubelet hold some): -raise-inotify raises the machine's limits for the run and puts
// the old values back after it. Without it, larger labs are refused.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/privcloud/privcloud/internal/parallel"

	"github.com/privcloud/privcloud/bench/benchutil"
	pcbundle "github.com/privcloud/privcloud/bundle"
	"github.com/privcloud/privcloud/e2e/lab"
	"github.com/privcloud/privcloud/report"
)

// measurement is one init run: per-phase wall time in order, the total, and the no-op re-run.
type measurement struct {
	phases      []string
	ms, noopMS  map[string]float64
	total, noop time.Duration
	noops       []time.Duration // the no-op re-runs once the load settled, in order; noop is their median
	firstNoop   time.Duration   // the no-op re-run right after init
	settle      time.Duration   // how long the machine's load took to settle after init
	idleBusy    float64         // the busy share of the machine's CPU with the cluster settled
	noopChanges int
	// busy is the share of the machine's CPU time spent busy during init (every lab host shares its cores)
	busy                 float64
	peakKiB, noopPeakKiB int64 // privcloud's maximum resident set
}

func main() {
	privcloud := flag.String("privcloud", "_output/privcloud", "privcloud binary")
	bundlePath := flag.String("bundle", "_output/lab-bundle.tar.zst", "the lab bundle (make bundle)")
	update := flag.String("update", "", "BENCHMARKS.md to update between the cluster markers (empty: print only)")
	sizesFlag := flag.String("sizes", "1,3,10,20", "lab sizes to measure init on, comma-separated (3 is needed)")
	skipDistribution := flag.Bool("skip-distribution", false, "measure init only")
	raiseInotify := flag.Bool("raise-inotify", false, "raise the machine's inotify limits for labs over 5 hosts, and restore them after")
	flag.Parse()
	var sizes []int
	for _, f := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("-sizes: %q is not a host count", f)
		}
		sizes = append(sizes, n)
	}
	if !slices.Contains(sizes, 3) {
		log.Fatal("-sizes must include 3: the other sizes are compared with it")
	}
	if slices.Max(sizes) > 5 {
		if !*raiseInotify {
			log.Fatalf("a lab of %d hosts needs more inotify instances than this machine allows: run with -raise-inotify (restored after), or -sizes 1,3", slices.Max(sizes))
		}
		restore, err := raiseInotifyLimits()
		if err != nil {
			log.Fatal(err)
		}
		defer restore()
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		go func() { <-stop; restore(); os.Exit(1) }()
	}
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
	if !*skipDistribution {
		dist, err := distribution(bin, bundle, image)
		if err != nil {
			log.Fatalf("distribution: %v", err)
		}
		fmt.Print(dist)
		if *update != "" {
			if err := benchutil.ReplaceSection(*update, "distribution", dist); err != nil {
				log.Fatal(err)
			}
		}
	}
	results := map[int]measurement{}
	for _, n := range sizes {
		m, err := measure(bin, bundle, image, n)
		if err != nil {
			log.Fatalf("%d hosts: %v", n, err)
		}
		results[n] = m
		log.Printf("%d hosts: init %.1f s, no-op re-run %.1f s", n, m.total.Seconds(), m.noop.Seconds())
	}
	w := clusterTable(sizes, results)
	fmt.Print(w)
	if *update != "" {
		if err := benchutil.ReplaceSection(*update, "cluster", w); err != nil {
			log.Fatal(err)
		}
	}
}

// clusterTable is the per-phase wall time at every size, the whole runs, privcloud's peak memory and the no-op
// re-runs, with the largest size against 3 hosts.
func clusterTable(sizes []int, results map[int]measurement) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Measured %s on this machine (2 cores), `privcloud init` from the lab bundle on fresh lab hosts (h1 control plane with etcd, the others workers; the pod network flannel), add-ons included; wall time per phase from the run's JSON events.\n\n",
		time.Now().UTC().Format("2006-01-02"))
	largest := slices.Max(sizes)
	w.WriteString("| phase |")
	for _, n := range sizes {
		fmt.Fprintf(&w, " %d node%s |", n, map[bool]string{true: "", false: "s"}[n == 1])
	}
	fmt.Fprintf(&w, " %d nodes, no-op re-run (median) |\n|---|%s---:|\n", largest, strings.Repeat("---:|", len(sizes)))
	for _, p := range results[largest].phases {
		fmt.Fprintf(&w, "| %s |", p)
		for _, n := range sizes {
			fmt.Fprintf(&w, " %s |", seconds(results[n].ms, p))
		}
		fmt.Fprintf(&w, " %s |\n", seconds(results[largest].noopMS, p))
	}
	row := func(name string, cell func(m measurement) string) {
		fmt.Fprintf(&w, "| **%s** |", name)
		for _, n := range sizes {
			fmt.Fprintf(&w, " **%s** |", cell(results[n]))
		}
		w.WriteString(" |\n")
	}
	row("init, whole run (nodes Ready, add-ons ready)", func(m measurement) string { return fmt.Sprintf("%.1f s", m.total.Seconds()) })
	row("machine CPU busy during init", func(m measurement) string { return fmt.Sprintf("%.0f %%", 100*m.busy) })
	row("no-op re-run once settled, median of 3", func(m measurement) string { return fmt.Sprintf("%.1f s (%d changed)", m.noop.Seconds(), m.noopChanges) })
	row("no-op re-runs once settled, in order", func(m measurement) string {
		var ds []string
		for _, d := range m.noops {
			ds = append(ds, fmt.Sprintf("%.1f", d.Seconds()))
		}
		return strings.Join(ds, " / ") + " s"
	})
	row("no-op re-run right after init", func(m measurement) string { return fmt.Sprintf("%.1f s", m.firstNoop.Seconds()) })
	row("settling after init: wait, then the machine's CPU busy", func(m measurement) string {
		return fmt.Sprintf("%.0f s, %.0f %%", m.settle.Seconds(), 100*m.idleBusy)
	})
	row("privcloud's peak memory (init / no-op)", func(m measurement) string {
		return fmt.Sprintf("%.0f / %.0f MiB", float64(m.peakKiB)/1024, float64(m.noopPeakKiB)/1024)
	})
	fmt.Fprintf(&w, "\n%d nodes against 3: init **%.2fx** the time (goal: under 1.5x); no-op re-run of %d nodes **%.1f s** once the new cluster settled (median of three), %.1f s right after init (goal: under 10 s).\n",
		largest, results[largest].total.Seconds()/results[3].total.Seconds(), largest, results[largest].noop.Seconds(), results[largest].firstNoop.Seconds())
	return w.String()
}

// raiseInotifyLimits raises the machine's inotify instance and watch limits for a large lab and returns what
// puts the old values back.
func raiseInotifyLimits() (restore func(), err error) {
	limits := map[string]int{"/proc/sys/fs/inotify/max_user_instances": 8192, "/proc/sys/fs/inotify/max_user_watches": 1048576}
	old := map[string]string{}
	restore = func() {
		for path, v := range old {
			if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
				log.Printf("restore %s to %s: %v", path, strings.TrimSpace(v), err)
			}
		}
	}
	for path, want := range limits {
		data, err := os.ReadFile(path)
		if err != nil {
			restore()
			return nil, err
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(string(data))); n >= want {
			continue
		}
		old[path] = string(data)
		if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
			restore()
			return nil, err
		}
		log.Printf("raised %s from %s to %d for the run", path, strings.TrimSpace(string(data)), want)
	}
	return restore, nil
}

func seconds(ms map[string]float64, phase string) string {
	v, ok := ms[phase]
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f s", v/1000)
}

// distribution sends the bundle's files to 3 fresh lab hosts twice: with privcloud (the bundle phase, each
// file written atomically and its sha256 checked on the host, then the images streamed into containerd) and
// with scp of the same files to 3 other fresh hosts, one scp per host, all at once.
func distribution(bin, bundlePath, image string) (md string, err error) {
	dir, err := os.MkdirTemp("", "privcloud-distbench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	l, err := lab.Open(dir, "/var/tmp/privcloud-clusterbench", io.Discard)
	if err != nil {
		return "", err
	}
	l.Bundle = bundlePath
	defer func() {
		if derr := l.Down(); err == nil {
			err = derr
		}
	}()
	if err := l.Up(context.Background(), image, 6); err != nil {
		return "", err
	}
	// privcloud on h1-h3: the local bundle verified and unpacked first (a dry run), so only sending is timed
	three := filepath.Join(dir, "cluster-3.yaml")
	if err := writeHosts(l.ClusterConfig(), three, 3); err != nil {
		return "", err
	}
	if _, err := privcloudRun(bin, "init", "-f", three, "--dry-run", "--only", "bundle"); err != nil {
		return "", err
	}
	start := time.Now()
	events, err := privcloudRun(bin, "init", "-f", three, "--only", "bundle", "--only", "containerd")
	if err != nil {
		return "", err
	}
	wall := time.Since(start)
	ms := map[string]float64{}
	for _, e := range events {
		if e.Host == "" && e.DurationMS != nil {
			ms[e.Phase] = *e.DurationMS
		}
	}
	ours := (ms["bundle"] + ms["containerd/images"]) / 1000

	// scp on h4-h6: the files privcloud unpacked, binaries and image archives, each host what its roles need
	r, err := bundleFiles(bundlePath, filepath.Join(dir, "state", "bundle"))
	if err != nil {
		return "", err
	}
	start = time.Now()
	errs := parallel.ForEach(context.Background(), 3, 3, func(i int) error {
		host := i + 4
		files := r.worker
		if host == 4 {
			files = r.controlPlane
		}
		args := append([]string{"-q", "-i", l.KeyPath(), "-o", "UserKnownHostsFile=" + l.KnownHosts(), "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes"}, files...)
		args = append(args, "root@"+lab.HostIP(host)+":/var/tmp/")
		if out, err := exec.Command("scp", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("scp to h%d: %v: %s", host, err, out)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	scp := time.Since(start).Seconds()
	var w strings.Builder
	fmt.Fprintf(&w, "Measured %s: the lab bundle's files to 3 fresh lab hosts (1 control plane, 2 workers: %.0f MiB in all).\n\n",
		time.Now().UTC().Format("2006-01-02"), float64(r.bytes)/(1<<20))
	w.WriteString("| what | time | scp against it |\n|---|---:|---:|\n")
	fmt.Fprintf(&w, "| privcloud, bundle phase: binaries and image archives written atomically, sha256 checked on each host | %.2f s | scp %s |\n",
		ms["bundle"]/1000, benchutil.Ratio(scp, ms["bundle"]/1000))
	fmt.Fprintf(&w, "| privcloud, bundle phase + images streamed into each host's containerd | %.2f s | scp %s |\n", ours, benchutil.Ratio(scp, ours))
	fmt.Fprintf(&w, "| plain `scp` of the same files, one scp per host at once (no check, nothing imported) | %.2f s | |\n", scp)
	fmt.Fprintf(&w, "\n(privcloud's whole `init --only bundle --only containerd` run, connections and containerd's configuration included: %.2f s.)\n", wall.Seconds())
	return w.String(), nil
}

// hostFiles are the unpacked bundle files each kind of host needs, and the bytes sent to all three.
type hostFiles struct {
	controlPlane, worker []string
	bytes                int64
}

// bundleFiles lists the files of the bundle a control plane and a worker need, unpacked under stateBundle.
func bundleFiles(bundlePath, stateBundle string) (hostFiles, error) {
	var out hostFiles
	r, err := pcbundle.Open(bundlePath)
	if err != nil {
		return out, err
	}
	r.Close()
	dirs, err := filepath.Glob(filepath.Join(stateBundle, r.Manifest.Name+"-*"))
	if err != nil || len(dirs) != 1 {
		return out, fmt.Errorf("no single unpacked bundle under %s (%v)", stateBundle, dirs)
	}
	wants := func(c pcbundle.Component, role string) bool {
		return !c.ImageOnly && c.Kind != "absent" && (len(c.Roles) == 0 || slices.Contains(c.Roles, role) ||
			role == "control-plane" && slices.Contains(c.Roles, "etcd"))
	}
	for _, c := range r.Manifest.Components {
		p := filepath.Join(dirs[0], c.Path)
		if wants(c, "control-plane") {
			out.controlPlane = append(out.controlPlane, p)
			out.bytes += c.Size
		}
		if wants(c, "worker") {
			out.worker = append(out.worker, p)
			out.bytes += 2 * c.Size
		}
	}
	return out, nil
}

// writeHosts writes a copy of a lab cluster.yaml listing only its first n hosts.
func writeHosts(src, dst string, n int) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	keep := func(name string) bool {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "h"))
		return err == nil && i <= n
	}
	return os.WriteFile(dst, []byte(lab.KeepHosts(string(data), keep)), 0o600)
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
	cpu0 := cpuTimes()
	events, peak, err := privcloudRunPeak(bin, "init", "-f", l.ClusterConfig())
	if err != nil {
		return m, err
	}
	m.total, m.peakKiB = time.Since(start), peak
	m.busy = cpuTimes().busySince(cpu0)
	m.ms = map[string]float64{}
	for _, e := range events {
		if e.Host == "" && e.Phase != "" && e.DurationMS != nil {
			m.phases = append(m.phases, e.Phase)
			m.ms[e.Phase] = *e.DurationMS
		}
	}
	// a no-op re-run right after init, while the new cluster's pods still start; then, once the machine's load
	// has settled, three more: their median is the figure reported, with its phases
	type noop struct {
		d      time.Duration
		events []report.Event
	}
	start = time.Now()
	if _, _, err = privcloudRunPeak(bin, "init", "-f", l.ClusterConfig()); err != nil {
		return m, err
	}
	m.firstNoop = time.Since(start)
	m.settle, m.idleBusy = settle()
	var runs []noop
	for range 3 {
		start = time.Now()
		events, peak, err = privcloudRunPeak(bin, "init", "-f", l.ClusterConfig())
		if err != nil {
			return m, err
		}
		runs = append(runs, noop{time.Since(start), events})
		m.noops = append(m.noops, time.Since(start))
		m.noopPeakKiB = max(m.noopPeakKiB, peak)
	}
	slices.SortFunc(runs, func(a, b noop) int { return int(a.d - b.d) })
	m.noop = runs[1].d
	m.noopMS = map[string]float64{}
	for _, r := range runs {
		for _, e := range r.events {
			if e.Summary != nil {
				m.noopChanges = max(m.noopChanges, e.Summary.Changed)
			}
		}
	}
	for _, e := range runs[1].events {
		if e.Host == "" && e.Phase != "" && e.DurationMS != nil {
			m.noopMS[e.Phase] = *e.DurationMS
		}
	}
	return m, nil
}

// settle waits until the machine's CPU load stops falling after init (two 5-second windows in a row within
// 3 points of each other; at most 3 minutes) and returns the wait and the last window's busy share.
func settle() (time.Duration, float64) {
	start := time.Now()
	prev := -1.0
	for {
		before := cpuTimes()
		time.Sleep(5 * time.Second)
		busy := cpuTimes().busySince(before)
		if (prev >= 0 && busy > prev-0.03 && busy < prev+0.03) || time.Since(start) > 3*time.Minute {
			return time.Since(start), busy
		}
		prev = busy
	}
}

// cpuStat is the machine's CPU time so far, in clock ticks: busy and idle (iowait counted as idle).
type cpuStat struct{ busy, idle int64 }

func cpuTimes() cpuStat {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	var st cpuStat
	for i, v := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 {
			st.idle += n
		} else {
			st.busy += n
		}
	}
	return st
}

// busySince is the busy share of the CPU time since before.
func (s cpuStat) busySince(before cpuStat) float64 {
	busy, idle := s.busy-before.busy, s.idle-before.idle
	if busy+idle == 0 {
		return 0
	}
	return float64(busy) / float64(busy+idle)
}

// privcloudRun runs privcloud with JSON events and returns them; a failed run returns its output as the error.
func privcloudRun(bin string, args ...string) ([]report.Event, error) {
	events, _, err := privcloudRunPeak(bin, args...)
	return events, err
}

// privcloudRunPeak is privcloudRun that also returns the run's peak resident memory in KiB.
func privcloudRunPeak(bin string, args ...string) ([]report.Event, int64, error) {
	var out, stderr bytes.Buffer
	cmd := exec.Command(bin, append(args, "-o", "json")...)
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
		return nil, 0, fmt.Errorf("privcloud %s: %v\n%s%s", strings.Join(args, " "), runErr, out.String(), stderr.String())
	}
	var peak int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		peak = ru.Maxrss // KiB on Linux
	}
	return events, peak, nil
}
