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

// ConnectAll connects to hosts in parallel, at most concurrency at once. It returns a client per host that
// answered (nil for the others, at the same index) and one error per host that did not.
func (d *Dialer) ConnectAll(ctx context.Context, hosts []api.Host, concurrency int) ([]*Client, []error) {
	clients := make([]*Client, len(hosts))
	errs := parallel.ForEach(ctx, len(hosts), concurrency, func(i int) error {
		var err error
		clients[i], err = d.Connect(ctx, hosts[i])
		return err
	})
	for i, err := range errs {
		if err != nil && clients[i] == nil {
			if _, ok := err.(*UnreachableError); !ok {
				errs[i] = &UnreachableError{Host: hosts[i].Name, Address: hosts[i].Address, Err: err}
			}
		}
	}
	return clients, errs
}
