package ssh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"

	"github.com/privcloud/privcloud/internal/secret"
)

// Action is one change a dry run would have made.
type Action struct {
	Host string
	// Kind is "run" or "write".
	Kind string
	// Cmd is the command a "run" action would execute.
	Cmd string
	// Path, Mode, Size and SHA256 describe the file a "write" action would write.
	Path   string
	Mode   fs.FileMode
	Size   int64
	SHA256 string
	// Diff is a line diff against the file's current content, when the host could be read.
	Diff string
}

// String renders the action for people: "would run: ..." or "would write: ...".
func (a Action) String() string {
	if a.Kind == "run" {
		return "would run: " + a.Cmd
	}
	s := fmt.Sprintf("would write: %s (%04o, %d bytes, sha256 %s)", a.Path, a.Mode, a.Size, a.SHA256[:12])
	if a.Diff != "" {
		s += "\n" + a.Diff
	}
	return s
}

// Recorder is the dry-run Host. It passes read-only work (ReadOnly commands, ReadFile) to the real host when
// there is one, and records every change instead of making it. With no real host (an offline plan) reads
// find nothing and read-only commands succeed with no output.
type Recorder struct {
	name   string
	inner  Host
	record func(Action)
}

// NewRecorder returns a dry-run host named name over inner (nil for an offline plan); record receives each
// action as it happens.
func NewRecorder(name string, inner Host, record func(Action)) *Recorder {
	return &Recorder{name: name, inner: inner, record: record}
}

// Name returns the host name.
func (r *Recorder) Name() string { return r.name }

// Run records cmd, or runs it on the real host when it is read-only.
func (r *Recorder) Run(ctx context.Context, cmd string, opts ...RunOption) (Result, error) {
	if Apply(opts).ReadOnly {
		if r.inner == nil {
			return Result{}, nil
		}
		return r.inner.Run(ctx, cmd, opts...)
	}
	r.record(Action{Host: r.name, Kind: "run", Cmd: cmd})
	return Result{}, nil
}

// Upload records the write with a diff against the current file, and reports whether it would change it.
func (r *Recorder) Upload(ctx context.Context, content Content, dst string, mode fs.FileMode, _ ...FileOption) (bool, error) {
	data, err := ReadAll(content)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	old, err := r.ReadFile(ctx, dst)
	switch {
	case err == nil && string(old) == string(data):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	a := Action{Host: r.name, Kind: "write", Path: dst, Mode: mode, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	switch {
	case secret.File(dst, data) || (err == nil && secret.File(dst, old)):
		a.Diff = "(secret content: not shown)"
	case err == nil && isText(old) && isText(data):
		a.Diff = LineDiff(string(old), string(data))
	}
	r.record(a)
	return true, nil
}

// ReadFile reads from the real host, or finds nothing offline.
func (r *Recorder) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if r.inner == nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fs.ErrNotExist}
	}
	return r.inner.ReadFile(ctx, path)
}

// Dial is refused: a dry run must not talk to services on the host, which could change state.
func (r *Recorder) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, fmt.Errorf("%s: dry run: not dialing %s %s", r.name, network, addr)
}

// Close closes the real host, if any.
func (r *Recorder) Close() error {
	if r.inner == nil {
		return nil
	}
	return r.inner.Close()
}

func isText(b []byte) bool {
	return !strings.ContainsRune(string(b), 0) && len(b) < 1<<20
}

// LineDiff is a minimal unified-style diff ("-" old, "+" new lines) over the longest common subsequence, enough
// to show an operator what a configuration change does.
func LineDiff(old, new string) string {
	a, b := strings.Split(old, "\n"), strings.Split(new, "\n")
	// lcs[i][j] = length of the LCS of a[i:] and b[j:]
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			fmt.Fprintf(&out, "-%s\n", a[i])
			i++
		default:
			fmt.Fprintf(&out, "+%s\n", b[j])
			j++
		}
	}
	return strings.TrimSuffix(out.String(), "\n")
}
