// Command privcloud-metrics is each host's metrics endpoint (package metricsproxy), run by systemd as
// privcloud-metrics.service when the monitoring add-on is on.
//
//	privcloud-metrics --config FILE --ca-file CA --cert-file CERT --key-file KEY
//
// The unit hands the three files over as systemd credentials: the service runs as a user of its own.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/privcloud/privcloud/metricsproxy"
)

func main() {
	config := flag.String("config", "/etc/kubernetes/metrics.yaml", "configuration file")
	caFile := flag.String("ca-file", "", "CA the clients' certificates must chain to")
	certFile := flag.String("cert-file", "", "serving (and loopback client) certificate")
	keyFile := flag.String("key-file", "", "its private key")
	flag.Parse()
	logger := log.New(os.Stderr, "", 0) // the journal stamps each line
	c, err := metricsproxy.LoadConfig(*config)
	if err != nil {
		logger.Fatal(err)
	}
	creds, err := metricsproxy.LoadCredentials(*caFile, *certFile, *keyFile)
	if err != nil {
		logger.Fatal(err)
	}
	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		logger.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger.Printf("serving metrics on https://%s to %v", c.Listen, c.Clients)
	if err := metricsproxy.Serve(ctx, l, creds, metricsproxy.Handler(c, creds)); err != nil {
		logger.Fatal(err)
	}
}
