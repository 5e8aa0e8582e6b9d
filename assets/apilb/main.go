// Command privcloud-api-lb is the node-local API server load balancer (package apilb), run by systemd on every
// node as privcloud-api-lb.service. SIGHUP (systemctl reload) reads the backends again: a control plane joining
// or leaving changes no client's connection to the others.
//
//	privcloud-api-lb --config FILE --ca-file CA --cert-file CERT --key-file KEY
//
// The CA verifies the API servers; the client certificate reads their /readyz. The unit hands the three files
// over as systemd credentials, so the service runs as a user of its own that cannot read the host's PKI.
package main

import (
	"errors"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/privcloud/privcloud/apilb"
)

func main() {
	config := flag.String("config", "/etc/kubernetes/api-lb.yaml", "configuration file")
	caFile := flag.String("ca-file", "", "CA bundle that verifies the API servers")
	certFile := flag.String("cert-file", "", "client certificate /readyz is read with")
	keyFile := flag.String("key-file", "", "its private key")
	flag.Parse()
	logger := log.New(os.Stderr, "", 0) // the journal stamps each line
	// caught from the start: a reload sent while starting must not end the process
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	c, err := apilb.LoadConfig(*config)
	if err != nil {
		logger.Fatal(err)
	}
	check, err := apilb.ReadyzCheck(*caFile, *certFile, *keyFile)
	if err != nil {
		logger.Fatal(err)
	}
	// systemd's socket (privcloud-api-lb.socket) when it started us: connections wait in its backlog while we
	// restart
	inherited, err := apilb.SystemdListener()
	if err != nil {
		logger.Fatal(err)
	}
	srv, err := apilb.Start(c, check, apilb.DefaultSettings, logger, inherited)
	if err != nil {
		logger.Fatal(err)
	}
	logger.Printf("listening on %s (health on %s), backends %v", srv.ProxyAddr(), srv.HealthAddr(), c.Backends)

	go func() {
		for range hup {
			n, err := apilb.LoadConfig(*config)
			if err != nil {
				logger.Printf("reload: %v (keeping backends %v)", err, c.Backends)
				continue
			}
			if n.Listen != c.Listen || n.Health != c.Health {
				logger.Printf("reload: only the backends change without a restart; restart the service for the rest")
			}
			if !slices.Equal(n.Backends, c.Backends) {
				logger.Printf("reload: backends %v", n.Backends)
				srv.Balancer.SetBackends(n.Backends)
				c.Backends = n.Backends
			}
		}
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-term
		srv.Close()
	}()
	err = srv.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) { // a listener closed on SIGTERM is the normal end
		logger.Fatal(err)
	}
}
