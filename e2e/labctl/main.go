// Command labctl brings the local lab up and down: `make lab-up N=3`, `make lab-down`, `make lab-status`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/privcloud/privcloud/e2e/lab"
)

func main() {
	dir := flag.String("dir", ".lab", "folder for the lab's record, keys, known_hosts and cluster.yaml")
	runtime := flag.String("runtime", "/var/tmp/privcloud-lab", "folder for the hosts' files (must be ext4)")
	cache := flag.String("cache", filepath.Join(home(), ".cache/privcloud/lab"), "image cache")
	n := flag.Int("n", 3, "hosts to start (up)")
	verbose := flag.Bool("v", false, "show the commands' output")
	bundlePath := flag.String("bundle", "", "bundle the lab's cluster.yaml installs from (up)")
	routed := flag.String("routed", "", "comma-separated numbers of the hosts to put on a second subnet ("+lab.RoutedSubnet+"), behind a router (up)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: labctl [flags] image|up|down|status|kill N|cut N|restore N")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var log io.Writer = io.Discard
	if *verbose {
		log = os.Stderr
	}
	l, err := lab.Open(*dir, *runtime, log)
	if err != nil {
		fail(err)
	}
	if *bundlePath != "" {
		if l.Bundle, err = filepath.Abs(*bundlePath); err != nil {
			fail(err)
		}
	}
	for _, f := range strings.FieldsFunc(*routed, func(r rune) bool { return r == ',' }) {
		i, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(f), "h"))
		if err != nil || i < 1 || i > *n {
			fail(fmt.Errorf("-routed: %q is not a host number from 1 to %d", f, *n))
		}
		l.Routed = append(l.Routed, i)
	}
	switch flag.Arg(0) {
	case "image":
		start := time.Now()
		img, err := lab.EnsureImage(*cache, log)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s (%s)\n", img, time.Since(start).Round(time.Millisecond))
	case "up":
		img, err := lab.EnsureImage(*cache, log)
		if err != nil {
			fail(err)
		}
		start := time.Now()
		if err := l.Up(ctx, img, *n); err != nil {
			fmt.Fprintln(os.Stderr, "the lab did not come up; taking down what started")
			if derr := l.Down(); derr != nil {
				fmt.Fprintln(os.Stderr, derr)
			}
			fail(err)
		}
		for i := 1; i <= *n; i++ {
			fmt.Printf("h%d up at %s\n", i, l.IP(i))
		}
		fmt.Printf("%d hosts answer SSH with verified host keys after %s\n", *n, time.Since(start).Round(10*time.Millisecond))
		fmt.Printf("use them with: privcloud preflight -f %s\n", l.ClusterConfig())
	case "down":
		if err := l.Down(); err != nil {
			fail(err)
		}
		fmt.Println("lab is down")
	case "status":
		fmt.Print(l.Status())
	case "kill", "cut", "restore":
		i, err := strconv.Atoi(flag.Arg(1))
		if err != nil {
			fail(fmt.Errorf("%s needs a host number", flag.Arg(0)))
		}
		action := map[string]func(int) error{"kill": l.Kill, "cut": l.Cut, "restore": l.Restore}[flag.Arg(0)]
		if err := action(i); err != nil {
			fail(err)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func home() string {
	h, _ := os.UserHomeDir()
	return h
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "labctl:", err)
	os.Exit(1)
}
