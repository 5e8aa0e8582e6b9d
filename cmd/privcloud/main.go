// Command privcloud installs and runs Kubernetes on your own machines from one cluster.yaml.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/privcloud/privcloud/cmd"
)

func main() {
	// Ctrl-C or SIGTERM cancels the context: remote commands stop and no phase is recorded as done.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Execute(ctx, os.Args[1:], cmd.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
