// Command probe is the e2e tests' tool inside pods: it serves HTTP, fetches URLs and resolves names, so tests
// can check Services and cluster DNS from a pod (Debian's busybox wget crashes in pods on some machines).
//
//	probe serve [ADDR]   answer every request with the pod's hostname (default :8080)
//	probe get URL        print the body of URL; exit 1 on failure
//	probe dns NAME       print the addresses NAME resolves to through /etc/resolv.conf; exit 1 on failure
//	probe sink [ADDR]    accept TCP connections and discard what they send (default :5201)
//	probe send ADDR SECS send zeros to a sink for SECS seconds over one connection; print "Mbit/s N"
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: probe serve [ADDR] | get URL | dns NAME | sink [ADDR] | send ADDR SECS")
	}
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		host, _ := os.Hostname()
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, host) })
		fail((&http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe())
	case "get":
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(arg(2))
		if err != nil {
			fail(err)
		}
		defer resp.Body.Close()
		io.Copy(os.Stdout, resp.Body)
		if resp.StatusCode != http.StatusOK {
			fail(resp.Status)
		}
	case "dns":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		addrs, err := (&net.Resolver{PreferGo: true}).LookupHost(ctx, arg(2))
		if err != nil {
			fail(err)
		}
		for _, a := range addrs {
			fmt.Println(a)
		}
	case "sink":
		addr := ":5201"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fail(err)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				fail(err)
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	case "send":
		secs, err := strconv.Atoi(arg(3))
		if err != nil || secs < 1 {
			fail("send: SECS must be a positive number")
		}
		c, err := net.DialTimeout("tcp", arg(2), 10*time.Second)
		if err != nil {
			fail(err)
		}
		buf := make([]byte, 128<<10)
		var sent int64
		start := time.Now()
		for time.Since(start) < time.Duration(secs)*time.Second {
			n, err := c.Write(buf)
			sent += int64(n)
			if err != nil {
				fail(err)
			}
		}
		c.Close()
		fmt.Printf("Mbit/s %.0f\n", float64(sent)*8/1e6/time.Since(start).Seconds())
	default:
		fail("unknown command " + os.Args[1])
	}
}

func arg(i int) string {
	if len(os.Args) <= i {
		fail("missing argument")
	}
	return os.Args[i]
}

func fail(v any) {
	fmt.Fprintln(os.Stderr, "probe:", v)
	os.Exit(1)
}
