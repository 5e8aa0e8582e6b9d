// Command sshbench measures privcloud's SSH fan-out and uploads side by side with what an operator would use
// otherwise (Ansible ad-hoc, OpenSSH in a loop or all at once, scp), on real sshd hosts on loopback, and
// writes a markdown report. `make bench` runs it and puts the report into BENCHMARKS.md.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	xssh "golang.org/x/crypto/ssh"

	"github.com/privcloud/privcloud/bench/benchutil"
	"github.com/privcloud/privcloud/internal/testsshd"
	"github.com/privcloud/privcloud/ssh"
)

func main() {
	nHosts := flag.Int("hosts", 32, "sshd hosts to start")
	runs := flag.Int("runs", 5, "repetitions of each fast measurement (the median is reported)")
	bin := flag.String("privcloud", "_output/privcloud", "privcloud binary")
	report := flag.String("update", "", "BENCHMARKS.md to update between the ssh markers (empty: print only)")
	flag.Parse()

	abs, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	b, err := setup(*nHosts, abs)
	if err != nil {
		log.Fatal(err)
	}
	// a failed measurement exits through fatal, which stops the servers first
	fatal = func(format string, args ...any) {
		b.stop()
		log.Fatalf(format, args...)
	}
	defer b.stop()
	rows := b.fanout(*runs)
	rows = append(rows, b.uploads(*runs)...)
	mem := b.peakMemory()
	md := b.markdown(rows, mem, *runs)
	fmt.Print(md)
	if *report != "" {
		if err := benchutil.ReplaceSection(*report, "ssh", md); err != nil {
			log.Fatal(err)
		}
	}
}

// fatal reports a failed measurement and exits; main makes it stop the servers first.
var fatal = log.Fatalf

type bench struct {
	dir, bin, key, known, config, inventory string
	servers                                 []*testsshd.Server
}

func setup(n int, bin string) (*bench, error) {
	dir, err := os.MkdirTemp("", "privcloud-sshbench-")
	if err != nil {
		return nil, err
	}
	b := &bench{dir: dir, bin: bin, key: filepath.Join(dir, "id_ed25519"), known: filepath.Join(dir, "known_hosts")}
	signer, err := testsshd.NewUserKey(b.key)
	if err != nil {
		return nil, err
	}
	var known, hosts, inv strings.Builder
	inv.WriteString("[all]\n")
	for i := range n {
		s, err := testsshd.Start(filepath.Join(dir, fmt.Sprintf("h%d", i+1)), testsshd.Options{AuthorizedKeys: []xssh.PublicKey{signer.PublicKey()}, StockShell: true})
		if err != nil {
			b.stop()
			return nil, err
		}
		b.servers = append(b.servers, s)
		known.WriteString(s.KnownHostsLine(s.HostKey) + "\n")
		fmt.Fprintf(&hosts, "  - {name: h%d, address: 127.0.0.1, internalAddress: 127.0.0.%d, port: %d, sshKeyPath: %s, roles: [%s]}\n", i+1, i+1, s.Port, b.key, role(i))
		fmt.Fprintf(&inv, "h%d ansible_host=127.0.0.1 ansible_port=%d\n", i+1, s.Port)
	}
	b.config = filepath.Join(dir, "cluster.yaml")
	b.inventory = filepath.Join(dir, "inventory.ini")
	writes := map[string]string{
		b.known:     known.String(),
		b.config:    "apiVersion: privcloud.io/v1alpha1\nkind: Cluster\nmetadata: {name: bench}\nspec:\n  hosts:\n" + hosts.String() + "  ssh:\n    knownHostsFiles: [" + b.known + "]\n",
		b.inventory: inv.String(),
		filepath.Join(dir, "ansible.cfg"): "[defaults]\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\n" +
			"[ssh_connection]\nssh_args = -o ControlMaster=no -o UserKnownHostsFile=" + b.known + "\n",
	}
	for p, content := range writes {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func role(i int) string {
	if i == 0 {
		return "control-plane, etcd"
	}
	return "worker"
}

func (b *bench) stop() {
	for _, s := range b.servers {
		s.Stop()
	}
	os.RemoveAll(b.dir)
	// the "hosts" are this machine: remove the hash records privcloud copy left for the bench's files
	records, _ := filepath.Glob(filepath.Join(ssh.DefaultSumsDir, strings.ReplaceAll(b.dir, "/", "%")+"*"))
	for _, r := range records {
		os.Remove(r)
	}
	os.Remove(ssh.DefaultSumsDir)
	os.Remove(filepath.Dir(ssh.DefaultSumsDir))
}

type row struct {
	group, tool string
	seconds     float64
	runs        int
}

// timeIt is the median wall time of n runs of script; a failure ends the benchmark.
func (b *bench) timeIt(n int, script string) float64 {
	t, err := benchutil.Median(n, b.dir, []string{"ANSIBLE_CONFIG=" + filepath.Join(b.dir, "ansible.cfg")}, script)
	if err != nil {
		fatal("%v", err)
	}
	return t
}

// sshBase is an OpenSSH client command verifying host keys as privcloud does; the port follows.
func (b *bench) sshBase() string {
	return fmt.Sprintf("ssh -q -o BatchMode=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -i %s", b.known, b.key)
}

func (b *bench) fanout(runs int) []row {
	n := len(b.servers)
	all := fmt.Sprintf("%d hosts: run `true` on every host", n)
	var ports []string
	for _, s := range b.servers {
		ports = append(ports, strconv.Itoa(s.Port))
	}
	seq := "for p in " + strings.Join(ports, " ") + "; do " + b.sshBase() + " -p $p root@127.0.0.1 true; done"
	par := "printf '%s\\n' " + strings.Join(ports, " ") + " | xargs -P " + strconv.Itoa(n) + " -I{} " +
		b.sshBase() + " -p {} root@127.0.0.1 true"
	one := "1 host: run `true`"
	rows := []row{
		{all, "privcloud exec", b.timeIt(runs, b.bin+" exec -f cluster.yaml -- true >/dev/null"), runs},
		{all, fmt.Sprintf("OpenSSH, %d clients at once (xargs -P %d)", n, n), b.timeIt(runs, par), runs},
		{all, "OpenSSH, one host after another", b.timeIt(1, seq), 1},
	}
	if _, err := exec.LookPath("ansible"); err == nil {
		rows = append(rows,
			row{all, fmt.Sprintf("Ansible ad-hoc, %d forks", n), b.timeIt(1, fmt.Sprintf("ansible all -i inventory.ini -u root --private-key %s -f %d -m command -a true >/dev/null", b.key, n)), 1},
			row{all, "Ansible ad-hoc, default 5 forks", b.timeIt(1, fmt.Sprintf("ansible all -i inventory.ini -u root --private-key %s -m command -a true >/dev/null", b.key)), 1})
	}
	rows = append(rows,
		row{one, "privcloud exec", b.timeIt(runs, b.bin+" exec -f cluster.yaml --hosts h1 -- true >/dev/null"), runs},
		row{one, "OpenSSH", b.timeIt(runs, fmt.Sprintf("%s -p %d root@127.0.0.1 true", b.sshBase(), b.servers[0].Port)), runs})
	return rows
}

func (b *bench) uploads(runs int) []row {
	src := filepath.Join(b.dir, "payload-200M")
	if err := randomFile(src, 200<<20); err != nil {
		fatal("%v", err)
	}
	group := "200 MB file to 4 hosts"
	var seq, par []string
	for i, s := range b.servers[:4] {
		dst := filepath.Join(b.dir, fmt.Sprintf("scp-%d", i))
		scp := fmt.Sprintf("scp -q -o BatchMode=yes -o UserKnownHostsFile=%s -i %s -P %d %s root@127.0.0.1:%s", b.known, b.key, s.Port, src, dst)
		seq = append(seq, scp)
		par = append(par, scp+" &")
	}
	// each run copies to a new path, so privcloud cannot skip unchanged files
	n := 0
	copyCmd := func() string {
		n++
		return fmt.Sprintf("%s copy -f cluster.yaml --hosts h1,h2,h3,h4 %s %s/copied-%d >/dev/null", b.bin, src, b.dir, n)
	}
	var pc []float64
	for range runs {
		pc = append(pc, b.timeIt(1, copyCmd()))
	}
	slices.Sort(pc)
	return []row{
		{group, "privcloud copy (4 at once, sha256 verified, atomic)", pc[len(pc)/2], runs},
		{group, "scp, 4 at once", b.timeIt(runs, strings.Join(par, " ")+" wait"), runs},
		{group, "scp, one host after another", b.timeIt(runs, strings.Join(seq, " && ")), runs},
	}
}

// peakMemory copies 1 GB to one host under /usr/bin/time and returns privcloud's peak RSS in MiB.
func (b *bench) peakMemory() float64 {
	src := filepath.Join(b.dir, "payload-1G")
	if err := randomFile(src, 1<<30); err != nil {
		fatal("%v", err)
	}
	out, err := exec.Command("/usr/bin/time", "-f", "maxrss=%M", b.bin, "copy", "-f", b.config, "--hosts", "h1", src, filepath.Join(b.dir, "copied-1G")).CombinedOutput()
	if err != nil {
		fatal("1 GB copy: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`maxrss=(\d+)`).FindSubmatch(out)
	if m == nil {
		fatal("no maxrss in %s", out)
	}
	kb, _ := strconv.Atoi(string(m[1]))
	os.Remove(src)
	return float64(kb) / 1024
}

func randomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *bench) markdown(rows []row, memMiB float64, runs int) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Measured %s on this machine (%s), %d real OpenSSH servers on loopback sharing its cores, root with "+
		"Debian's stock shell startup files as on a fresh host; the median of %d runs where the runs column says so.\n\n",
		time.Now().UTC().Format("2006-01-02"), machine(), len(b.servers), runs)
	w.WriteString("| task | tool | wall time | runs | relative to privcloud |\n|---|---|---:|---:|---:|\n")
	base := map[string]float64{}
	for _, r := range rows {
		if strings.HasPrefix(r.tool, "privcloud") {
			base[r.group] = r.seconds
		}
	}
	for _, r := range rows {
		ratio := "1.00x"
		if !strings.HasPrefix(r.tool, "privcloud") {
			ratio = benchutil.Ratio(r.seconds, base[r.group])
		}
		fmt.Fprintf(&w, "| %s | %s | %.2f s | %d | %s |\n", r.group, r.tool, r.seconds, r.runs, ratio)
	}
	fmt.Fprintf(&w, "\n`privcloud copy` does more than scp: it hashes the file, checks the sha256 on every host, fsyncs and "+
		"renames atomically, and skips hosts that already hold the file.\n")
	fmt.Fprintf(&w, "\nPeak memory (max RSS) of `privcloud copy` sending a 1 GB file: %.1f MiB.\n", memMiB)
	return w.String()
}

func machine() string {
	out, _ := exec.Command("nproc").Output()
	return strings.TrimSpace(string(out)) + " cores"
}
