// Package sshtest provides a scripted in-memory Host for unit tests of phases. Real-host tests of the same
// paths live beside the SSH transport and in the e2e suite.
package sshtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/privcloud/privcloud/ssh"
)

// Fake is an in-memory host: a file map, scripted command results and a log of what was run.
type Fake struct {
	HostName string

	mu       sync.Mutex
	files    map[string]file
	scripts  []script
	commands []string
}

type file struct {
	data []byte
	mode fs.FileMode
}

type script struct {
	prefix string
	result ssh.Result
	err    error
	fn     func(cmd string) (ssh.Result, error)
}

// NewFake returns an empty fake host.
func NewFake(name string) *Fake {
	return &Fake{HostName: name, files: map[string]file{}}
}

// OnCommand makes every command starting with prefix return res (and err, which may be nil). A non-zero
// exit code without err yields an *ssh.ExecError, as the real host does. Later scripts win.
func (f *Fake) OnCommand(prefix string, res ssh.Result, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts = append(f.scripts, script{prefix: prefix, result: res, err: err})
}

// OnCommandFunc makes every command starting with prefix answered by fn: a host whose answers depend on
// what was run before. Later scripts win.
func (f *Fake) OnCommandFunc(prefix string, fn func(cmd string) (ssh.Result, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts = append(f.scripts, script{prefix: prefix, fn: fn})
}

// SetFile places a file on the fake host.
func (f *Fake) SetFile(path string, data []byte, mode fs.FileMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = file{data: append([]byte(nil), data...), mode: mode}
}

// File returns a file's content and whether it exists.
func (f *Fake) File(path string) ([]byte, fs.FileMode, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.files[path]
	return fl.data, fl.mode, ok
}

// Files lists the paths present, sorted.
func (f *Fake) Files() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.files))
	for p := range f.files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Commands returns the commands run so far, in order.
func (f *Fake) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

// Name returns the host name.
func (f *Fake) Name() string { return f.HostName }

// Run records cmd and returns the newest matching script's result (exit 0 with no output by default).
func (f *Fake) Run(ctx context.Context, cmd string, opts ...ssh.RunOption) (ssh.Result, error) {
	if err := ctx.Err(); err != nil {
		return ssh.Result{}, err
	}
	f.mu.Lock()
	f.commands = append(f.commands, cmd)
	var s *script
	for i := len(f.scripts) - 1; i >= 0; i-- {
		if strings.HasPrefix(cmd, f.scripts[i].prefix) {
			s = &f.scripts[i]
			break
		}
	}
	f.mu.Unlock()
	if s == nil {
		return ssh.Result{}, nil
	}
	if s.fn != nil {
		return s.fn(cmd)
	}
	if s.err != nil {
		return s.result, s.err
	}
	if s.result.ExitCode != 0 {
		return s.result, &ssh.ExecError{Host: f.HostName, Cmd: cmd, ExitCode: s.result.ExitCode, Stderr: string(s.result.Stderr)}
	}
	return s.result, nil
}

// Upload stores the content, reporting a change only when the bytes or mode differ.
func (f *Fake) Upload(ctx context.Context, content ssh.Content, dst string, mode fs.FileMode, _ ...ssh.FileOption) (bool, error) {
	data, err := ssh.ReadAll(content)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.files[dst]; ok && bytes.Equal(old.data, data) && old.mode == mode {
		return false, nil
	}
	f.files[dst] = file{data: data, mode: mode}
	return true, nil
}

// States reports the stored files among paths, owned by root (ssh.States), without recording a command.
func (f *Fake) States(ctx context.Context, paths []string) (map[string]ssh.FileState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]ssh.FileState{}
	for _, p := range paths {
		if fl, ok := f.files[p]; ok {
			sum := sha256.Sum256(fl.data)
			out[p] = ssh.FileState{SHA256: hex.EncodeToString(sum[:]), Mode: fmt.Sprintf("%o", fl.mode.Perm()), Owner: "root:root"}
		}
	}
	return out, nil
}

// ReadFile returns a stored file or an fs.ErrNotExist error.
func (f *Fake) ReadFile(ctx context.Context, path string) ([]byte, error) {
	data, _, ok := f.File(path)
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fs.ErrNotExist}
	}
	return data, nil
}

// Dial is not supported by the fake.
func (f *Fake) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, fmt.Errorf("sshtest: Dial(%s, %s) not supported", network, addr)
}

// Close does nothing.
func (f *Fake) Close() error { return nil }

var (
	_ ssh.Host   = (*Fake)(nil)
	_ ssh.Stater = (*Fake)(nil)
)
