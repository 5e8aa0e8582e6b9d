// Command privcloud-api-lb is the node-local API server load balancer (package apilb), run by systemd on every
// node as privcloud-api-lb.service. SIGHUP (systemctl reload) reads the backends and the credentials again: a
// control plane joining or leaving, a renewed certificate or a new CA changes no client's connection.
//
//	privcloud-api-lb --config FILE --ca-file CA --cert-file CERT --key-file KEY
//	privcloud-api-lb stage-credentials --ca-file CA --cert-file CERT --key-file KEY --to DIR
//
// The CA verifies the API servers; the client certificate reads their /readyz. The unit stages the three files
// into the service's runtime directory as root (stage-credentials, before the start and each reload), so the
// service runs as a user of its own that cannot read the host's PKI.
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
	logger := log.New(os.Stderr, "", 0) // the journal stamps each line
	if len(os.Args) > 1 && os.Args[1] == "stage-credentials" {
		fs := flag.NewFlagSet("stage-credentials", flag.ExitOnError)
		caFile, certFile, keyFile := credentialFlags(fs)
		to := fs.String("to", "", "directory to copy them into, owned by the service's user")
		fs.Parse(os.Args[2:])
		if err := apilb.StageCredentials(*caFile, *certFile, *keyFile, *to); err != nil {
			logger.Fatal(err)
		}
		return
	}
	config := flag.String("config", "/etc/kubernetes/api-lb.yaml", "configuration file")
	caFile, certFile, keyFile := credentialFlags(flag.CommandLine)
	flag.Parse()
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
			if check, err := apilb.ReadyzCheck(*caFile, *certFile, *keyFile); err != nil {
				logger.Printf("reload: %v (keeping the credentials read before)", err)
			} else {
				srv.Balancer.SetCheck(check)
				logger.Printf("reload: credentials read again")
			}
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

// credentialFlags are the files the health checks authenticate with.
func credentialFlags(fs *flag.FlagSet) (caFile, certFile, keyFile *string) {
	return fs.String("ca-file", "", "CA bundle that verifies the API servers"),
		fs.String("cert-file", "", "client certificate /readyz is read with"),
		fs.String("key-file", "", "its private key")
}
