package ssh

import (
	"context"
	"fmt"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/internal/parallel"
)

// Environment is what a Dialer may read from the operator's side: variables and, on a terminal, a prompt.
type Environment struct {
	Getenv func(string) string
	// Prompt asks for a secret without echo; nil when there is no terminal.
	Prompt func(question string) ([]byte, error)
	// AcceptNewHostKeys records the keys of hosts never seen before (trust on first use).
	AcceptNewHostKeys bool
}

// NewDialer builds the Dialer for a cluster's SSH settings. Secrets named in cluster.yaml by environment
// variable must be set; they are read here once and never logged.
func NewDialer(c *api.Cluster, env Environment) (*Dialer, error) {
	s := c.Spec.SSH
	hk, err := NewHostKeys(s.KnownHostsFiles, env.AcceptNewHostKeys)
	if err != nil {
		return nil, err
	}
	secret := func(field, name string) (string, error) {
		if name == "" {
			return "", nil
		}
		v := env.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("%s names the environment variable %s, which is not set", field, name)
		}
		return v, nil
	}
	password, err := secret("spec.ssh.passwordEnv", s.PasswordEnv)
	if err != nil {
		return nil, err
	}
	sudoPassword, err := secret("spec.ssh.sudo.passwordEnv", s.Sudo.PasswordEnv)
	if err != nil {
		return nil, err
	}
	return &Dialer{
		HostKeys:       hk,
		Credentials:    &Credentials{Getenv: env.Getenv, Prompt: env.Prompt, Password: password},
		ConnectTimeout: s.ConnectTimeout.Duration,
		CommandTimeout: s.CommandTimeout.Duration,
		KeepAlive:      s.KeepAliveInterval.Duration,
		SudoPassword:   sudoPassword,
		Attempts:       3,
	}, nil
}

// OnEach connects to each host, at most concurrency at once, and calls fn with the connection, or with the
// connect error (an *UnreachableError) and no connection; the connection is closed when fn returns. It
// returns fn's result per host, by index.
func (d *Dialer) OnEach(ctx context.Context, hosts []api.Host, concurrency int, fn func(i int, c *Client, err error) error) []error {
	return parallel.ForEach(ctx, len(hosts), concurrency, func(i int) error {
		c, err := d.Connect(ctx, hosts[i])
		if err != nil {
			return fn(i, nil, err)
		}
		defer c.Close()
		return fn(i, c, nil)
	})
}
