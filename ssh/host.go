// Package ssh is the transport to cluster hosts: the Host contract every phase works through, the typed errors
// of remote work, and the dry-run recorder that stands in for a host when nothing may change.
package ssh

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/privcloud/privcloud/internal/exitclass"
)

// Host is one machine privcloud works on. Implementations are safe for concurrent use. Compound operations
// (write a file if changed, restart a unit) are free functions over Host, not more methods.
type Host interface {
	// Name is the host's name from cluster.yaml.
	Name() string
	// Run executes cmd through the remote shell, as root (through sudo for other users). A non-zero exit is
	// returned as *ExecError together with the Result, so callers that expect failures can inspect it.
	Run(ctx context.Context, cmd string, opts ...RunOption) (Result, error)
	// Upload writes content to dst atomically (temporary file, fsync, rename) with the given mode. It reports
	// whether the file changed: a destination already holding the same bytes is left alone.
	Upload(ctx context.Context, content Content, dst string, mode fs.FileMode, opts ...FileOption) (changed bool, err error)
	// ReadFile returns a remote file's content; a missing file gives an error matching fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Dial opens a connection from the host to a TCP address or unix socket (network "tcp" or "unix"),
	// carried through the SSH connection: no port is opened to reach the API server or containerd.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// Close releases the connection.
	Close() error
}

// Result is what a finished remote command produced.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// RunOptions adjust one command; build them with the RunOption helpers.
type RunOptions struct {
	Stdin    io.Reader
	ReadOnly bool
	Untimed  bool
}

// RunOption sets one of RunOptions.
type RunOption func(*RunOptions)

// WithStdin feeds r to the command's standard input (secrets go here, never on the command line).
func WithStdin(r io.Reader) RunOption { return func(o *RunOptions) { o.Stdin = r } }

// ReadOnly marks a command that only inspects the host. A dry run executes read-only commands for real, so
// a plan reflects the host's actual state, and records every other command instead of running it.
func ReadOnly() RunOption { return func(o *RunOptions) { o.ReadOnly = true } }

// Untimed exempts a command from the command timeout: it runs as long as its context, as a lock holder that
// lasts the whole run does.
func Untimed() RunOption { return func(o *RunOptions) { o.Untimed = true } }

// Apply folds options into a RunOptions value, for Host implementations.
func Apply(opts []RunOption) RunOptions {
	var o RunOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Content is the data Upload writes. It may be opened more than once (to hash it, then to send it), so large
// files are streamed from disk rather than held in memory.
type Content interface {
	Open() (io.ReadCloser, error)
}

// Bytes is in-memory Content, for rendered configuration files.
type Bytes []byte

// Open returns a reader over the bytes.
func (b Bytes) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }

// LocalFile is Content read from a local path, for binaries and image archives.
type LocalFile string

// Open opens the file.
func (f LocalFile) Open() (io.ReadCloser, error) { return os.Open(string(f)) }

// ReadAll reads the whole content into memory; for small files (configuration, records) only.
func ReadAll(c Content) ([]byte, error) {
	rc, err := c.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// ExecError is a remote command that ran and exited non-zero.
type ExecError struct {
	Host     string
	Cmd      string
	ExitCode int
	Stderr   string
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("%s: command %q exited with code %d", e.Host, e.Cmd, e.ExitCode)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + lastLines(s, 5)
	}
	return msg
}

// UnreachableError is a host that could not be connected to or authenticated with.
type UnreachableError struct {
	Host    string
	Address string
	Err     error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s (%s): cannot connect: %v", e.Host, e.Address, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// ExitClass says the command line exits as for an unreachable host.
func (e *UnreachableError) ExitClass() exitclass.Class { return exitclass.Unreachable }

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
