package ssh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// exitNotExist is the exit code the remote read script uses for a missing file.
const exitNotExist = 66

// exitChecksum is the exit code of the upload script when the received bytes do not match.
const exitChecksum = 65

// uploadScript receives stdin into a temporary file beside the destination, checks its sha256, sets mode and
// owner, fsyncs and renames it into place: readers see the old file or the new one, never a part. If the
// stream breaks, the checksum fails or a signal arrives, the temporary file is removed.
const uploadScript = hashFunc + `set -eu
dst=$1 sum=$2 mode=$3 owner=$4
# the shell's own words where they do (no dirname, no mkdir of what exists): an install makes hundreds of uploads
case $dst in */*) dir=${dst%/*}; dir=${dir:-/} ;; *) dir=. ;; esac
[ -d "$dir" ] || mkdir -p -- "$dir"
tmp=$(mktemp -- "$dir/.privcloud-upload.XXXXXXXX")
# the journal names every temporary file, so one left by a killed run is found and removed by the next
[ -d "$PRIVCLOUD_SUMS" ] || mkdir -p "$PRIVCLOUD_SUMS"
printf '%s\n' "$tmp" >> "$PRIVCLOUD_SUMS/uploads.journal"
trap 'rm -f -- "$tmp"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$tmp"
got=$(sha256 "$tmp")
if [ "$got" != "$sum" ]; then echo "checksum mismatch: received $got, sent $sum" >&2; exit 65; fi
chmod -- "$mode" "$tmp"
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
sync -- "$tmp"
mv -f -- "$tmp" "$dst"
trap - EXIT
sync -- "$dir" 2>/dev/null || true
remember "$dst" "$sum"`

// statScript prints the sha256, mode and owner of a file, or nothing when it does not exist.
const statScript = hashFunc + `state "$1"`

// hashFunc defines sha256 FILE: OpenSSL where the host has it (it uses the CPU's SHA extensions, several
// times faster than coreutils), sha256sum otherwise; and remember FILE SUM, which records a file's hash with
// its size, inode and ctime in the folder $PRIVCLOUD_SUMS (DefaultSumsDir unless the Dialer says otherwise).
const hashFunc = `sha256() {
  if command -v openssl >/dev/null 2>&1; then s=$(openssl dgst -sha256 -r "$1") || return 1
  else s=$(sha256sum -- "$1") || return 1; fi
  echo "${s%% *}"
}
# record FILE sets rec to the file's hash record: its path with every / made % (recordName), by the shell alone
record() {
  rn= rp=$1
  while :; do case $rp in */*) rn=$rn${rp%%/*}%; rp=${rp#*/} ;; *) rn=$rn$rp; break ;; esac; done
  rec=$PRIVCLOUD_SUMS/$rn
}
# state FILE [RECORD] prints the file's sha256, mode and owner. The sha256 comes from the record of the last
# hash when the size, inode and ctime are unchanged since (no write leaves all three alone, and ctime cannot be
# set back), so a converged re-run does not re-read gigabytes. (States checks many files with one stat.)
state() {
  [ -f "$1" ] || return 0
  if [ -n "${2:-}" ]; then rec=$2; else record "$1"; fi
  st=$(stat -c '%s %i %.9Z %a %U:%G' -- "$1") || return 1
  now=${st% * *} sum= was=
  if [ -f "$rec" ]; then { read -r sum; read -r was; } < "$rec" || true; fi
  if [ -z "$sum" ] || [ "$was" != "$now" ]; then sum=$(sha256 "$1") || return 1; remember "$1" "$sum"; fi
  echo "$sum ${st#* * * }"
}
remember() {
  record "$1"; r=$rec; [ -d "$PRIVCLOUD_SUMS" ] || mkdir -p "$PRIVCLOUD_SUMS"
  printf '%s\n%s\n' "$2" "$(stat -c '%s %i %.9Z' -- "$1")" > "$r.tmp" && mv -f "$r.tmp" "$r" || true
}
`

// DefaultSumsDir is where hosts keep the record of the hashes of the files privcloud wrote.
const DefaultSumsDir = "/var/lib/privcloud/sums"

func (c *Client) sumsEnv() string {
	dir := c.sumsDir
	if dir == "" {
		dir = DefaultSumsDir
	}
	return "PRIVCLOUD_SUMS=" + ShellQuote(dir) + " "
}

// sweepScript removes what interrupted runs left: the temporary files of uploads killed before their rename
// (named in the journal), half-switched links (LINK.privcloud) and partial hash records. Only safe while no
// other privcloud works on the host: run it under the host lock.
const sweepScript = `set -u
j="$PRIVCLOUD_SUMS/uploads.journal"
if [ -f "$j" ]; then
  while IFS= read -r f; do
    case "$f" in */.privcloud-upload.*) if [ -e "$f" ]; then rm -f -- "$f" && echo "$f"; fi;; esac
  done < "$j"
  rm -f -- "$j"
fi
for f in /usr/local/bin/*.privcloud /opt/cni/bin/*.privcloud "$PRIVCLOUD_SUMS"/*.tmp; do
  if [ -e "$f" ] || [ -L "$f" ]; then rm -f -- "$f" && echo "$f"; fi
done
true`

// RemoveStaleUploads removes the temporary files and half-switched links that a killed or cut-off run left on
// h, and returns their paths. Call it only while holding the host's lock.
func RemoveStaleUploads(ctx context.Context, h Host) ([]string, error) {
	env := sumsEnvOf(h)
	res, err := h.Run(ctx, inline(env, sweepScript))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(res.Stdout)), nil
}

// inline is script run by the command's own shell with the hash-record folder env and the positional
// arguments args: no second shell per command.
func inline(env, script string, args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = ShellQuote(a)
	}
	return env + "\nset -- " + strings.Join(quoted, " ") + "\n" + script
}

// sumsEnvOf sets the hash-record folder for a script on h: the client's own, or the default on other hosts.
func sumsEnvOf(h Host) string {
	if c, ok := h.(interface{ sumsEnv() string }); ok {
		return c.sumsEnv()
	}
	return "PRIVCLOUD_SUMS=" + DefaultSumsDir + " "
}

// FileState is what a remote file is: its sha256, mode (octal, as stat prints it) and owner ("user:group").
type FileState struct {
	SHA256, Mode, Owner string
}

// Stater is a Host that reports file states itself (the in-memory host of unit tests).
type Stater interface {
	States(ctx context.Context, paths []string) (map[string]FileState, error)
}

// States reports the state of each of paths that exists on h. A converged host answers in one command with
// one process, whatever the number of files: a single stat for them all, and the hash records read by the
// shell itself; the sha256 comes from a file's record when its size, inode and ctime are unchanged since. Only
// files without such a record are hashed, in a second command.
func States(ctx context.Context, h Host, paths []string) (map[string]FileState, error) {
	if s, ok := h.(Stater); ok {
		return s.States(ctx, paths)
	}
	if len(paths) == 0 {
		return map[string]FileState{}, nil
	}
	env := sumsEnvOf(h)
	quoted, records := make([]string, len(paths)), make([]string, len(paths))
	for i, p := range paths {
		quoted[i], records[i] = ShellQuote(p), ShellQuote(recordName(p))
	}
	script := `stat -L --printf '%n\t%s %i %.9Z\t%a %U:%G\t%F\n' -- ` + strings.Join(quoted, " ") + ` 2>/dev/null
for r in ` + strings.Join(records, " ") + `; do
  if [ -f "$PRIVCLOUD_SUMS/$r" ]; then sum= was=; { read -r sum; read -r was; } < "$PRIVCLOUD_SUMS/$r" || true; printf 'R\t%s\t%s\t%s\n' "$r" "$sum" "$was"; fi
done
true`
	res, err := h.Run(ctx, inline(env, script), ReadOnly())
	if err != nil {
		return nil, err
	}
	type record struct{ sum, was string }
	recs := map[string]record{}
	type stat struct{ now, modeOwner, kind string }
	stats := map[string]stat{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Split(line, "\t")
		switch {
		case len(f) == 4 && f[0] == "R":
			recs[f[1]] = record{f[2], f[3]}
		case len(f) == 4:
			stats[f[0]] = stat{f[1], f[2], f[3]}
		}
	}
	out := map[string]FileState{}
	var unknown []string
	for _, p := range paths {
		st, ok := stats[p]
		if !ok || st.kind != "regular file" && st.kind != "regular empty file" {
			continue // missing, or not a file: no state, as for a file that does not exist
		}
		mo := strings.Fields(st.modeOwner)
		if rec, ok := recs[recordName(p)]; ok && rec.sum != "" && rec.was == st.now && len(mo) == 2 {
			out[p] = FileState{SHA256: rec.sum, Mode: mo[0], Owner: mo[1]}
			continue
		}
		unknown = append(unknown, p)
	}
	if len(unknown) == 0 {
		return out, nil
	}
	hashed, err := hashStates(ctx, h, env, unknown)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, hashed)
	return out, nil
}

// recordName is the name of a file's hash record in the record folder.
func recordName(path string) string { return strings.ReplaceAll(path, "/", "%") }

// hashStates hashes the files of paths on the host and records their hashes, in one command.
func hashStates(ctx context.Context, h Host, env string, paths []string) (map[string]FileState, error) {
	var script strings.Builder
	script.WriteString(hashFunc)
	for _, p := range paths {
		// the record's name made here rather than by a process on the host per file
		fmt.Fprintf(&script, "s=$(state %[1]s \"$PRIVCLOUD_SUMS\"/%[2]s); [ -z \"$s\" ] || printf '%%s\\t%%s\\n' %[1]s \"$s\"\n",
			ShellQuote(p), ShellQuote(recordName(p)))
	}
	res, err := h.Run(ctx, inline(env, script.String()), ReadOnly())
	if err != nil {
		return nil, err
	}
	out := map[string]FileState{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		path, rest, ok := strings.Cut(line, "\t")
		if f := strings.Fields(rest); ok && len(f) == 3 {
			out[path] = FileState{SHA256: f[0], Mode: f[1], Owner: f[2]}
		}
	}
	return out, nil
}

// FileOption adjusts an upload.
type FileOption func(*fileOptions)

type fileOptions struct{ owner string }

// WithOwner sets the uploaded file's owner ("user" or "user:group").
func WithOwner(owner string) FileOption { return func(o *fileOptions) { o.owner = owner } }

// Upload writes content to dst atomically with mode (and owner), verified by sha256 on the host. A file that
// already has the same content, mode and owner is left alone and Upload reports no change. The content is
// streamed, never held in memory. If the connection dies mid-transfer, Upload reconnects and sends it again
// once: the destination never holds a partial file.
func (c *Client) Upload(ctx context.Context, content Content, dst string, mode fs.FileMode, opts ...FileOption) (bool, error) {
	var o fileOptions
	for _, opt := range opts {
		opt(&o)
	}
	sum, err := contentSHA256(content)
	if err != nil {
		return false, fmt.Errorf("%s: upload %s: %w", c.name, dst, err)
	}
	modeStr := fmt.Sprintf("%o", mode.Perm())
	res, err := c.Run(ctx, inline(c.sumsEnv(), statScript, dst))
	if err != nil {
		return false, err
	}
	if f := strings.Fields(string(res.Stdout)); len(f) == 3 && (FileState{SHA256: f[0], Mode: f[1], Owner: f[2]}).Matches(sum, mode, o.owner) {
		return false, nil
	}
	err = c.send(ctx, content, dst, sum, modeStr, o.owner)
	if errors.Is(err, ErrConnectionLost) && ctx.Err() == nil {
		if rerr := c.reconnect(ctx); rerr != nil {
			return false, fmt.Errorf("%w (reconnecting: %v)", err, rerr)
		}
		err = c.send(ctx, content, dst, sum, modeStr, o.owner)
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

func (c *Client) send(ctx context.Context, content Content, dst, sum, mode, owner string) error {
	rc, err := content.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	var stderr cappedBuffer
	// a shell of its own, named privcloud-upload: the upload is told apart from other commands in ps
	cmd := c.sumsEnv() + "sh -c " + ShellQuote(uploadScript) + " privcloud-upload " + ShellQuote(dst) + " " + sum + " " + mode + " " + ShellQuote(owner)
	err = c.run(ctx, cmd, rc, io.Discard, &stderr)
	var ee *ExecError
	if errors.As(err, &ee) {
		ee.Cmd = "upload " + dst
		ee.Stderr = string(stderr.Bytes())
		if ee.ExitCode == exitChecksum {
			return fmt.Errorf("%s: upload %s: %s", c.name, dst, strings.TrimSpace(ee.Stderr))
		}
	}
	return err
}

func ownerMatches(have, want string) bool {
	if strings.Contains(want, ":") {
		return have == want
	}
	user, _, _ := strings.Cut(have, ":")
	return user == want
}

func contentSHA256(content Content) (string, error) {
	if h, ok := content.(interface{ SHA256() (string, error) }); ok {
		return h.SHA256()
	}
	return hashContent(content)
}

func hashContent(content Content) (string, error) {
	rc, err := content.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// NewFile is a local file whose sha256 is already known (from a verified manifest, say): it is not hashed.
func NewFile(path, sha256 string) *File {
	f := &File{Path: path, sum: sha256}
	f.once.Do(func() {})
	return f
}

// File is a local file whose sha256 is computed once, however many hosts it is sent to.
type File struct {
	Path string

	once sync.Once
	sum  string
	err  error
}

// Open opens the file.
func (f *File) Open() (io.ReadCloser, error) { return os.Open(f.Path) }

// SHA256 returns the file's digest, hashing it on first use.
func (f *File) SHA256() (string, error) {
	f.once.Do(func() { f.sum, f.err = hashContent(LocalFile(f.Path)) })
	return f.sum, f.err
}

// ReadFile returns the content of a remote file; a missing file gives an error matching fs.ErrNotExist.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	res, err := c.Run(ctx, fmt.Sprintf("if [ -e %[1]s ]; then exec cat -- %[1]s; else exit %d; fi", ShellQuote(path), exitNotExist))
	var ee *ExecError
	if errors.As(err, &ee) && ee.ExitCode == exitNotExist {
		return nil, &fs.PathError{Op: "read", Path: c.name + ":" + path, Err: fs.ErrNotExist}
	}
	return res.Stdout, err
}

// Download streams a remote file to a local path, atomically (temporary file, then rename).
func (c *Client) Download(ctx context.Context, remote, local string) error {
	tmp, err := os.CreateTemp(filepath.Dir(local), ".privcloud-download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var stderr cappedBuffer
	err = c.run(ctx, fmt.Sprintf("if [ -e %[1]s ]; then exec cat -- %[1]s; else exit %d; fi", ShellQuote(remote), exitNotExist), nil, tmp, &stderr)
	var ee *ExecError
	if errors.As(err, &ee) && ee.ExitCode == exitNotExist {
		err = &fs.PathError{Op: "download", Path: c.name + ":" + remote, Err: fs.ErrNotExist}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), local)
}

// Matches tells whether the file already holds content of sha256 sum with mode and owner ("" for any owner).
func (s FileState) Matches(sum string, mode fs.FileMode, owner string) bool {
	return s.SHA256 == sum && s.Mode == fmt.Sprintf("%o", mode.Perm()) && (owner == "" || ownerMatches(s.Owner, owner))
}

// Put is one file for UploadAll.
type Put struct {
	Content Content
	Dst     string
	Mode    fs.FileMode
	Owner   string // "" leaves the owner as the upload makes it
}

// InPlace tells whether the states read from the host (States) show the file already there as p would write it.
func (p Put) InPlace(have map[string]FileState) (bool, error) {
	st, ok := have[p.Dst]
	if !ok {
		return false, nil
	}
	sum, err := contentSHA256(p.Content)
	return err == nil && st.Matches(sum, p.Mode, p.Owner), err
}

// UploadAll writes each file that differs from what h holds (see Host.Upload) and returns the destinations
// that changed, in order. Their states are read in one command first, so files that are already in place
// cost one command however many there are: a converged re-run would otherwise pay a command per file.
func UploadAll(ctx context.Context, h Host, puts []Put) ([]string, error) {
	var have map[string]FileState
	if len(puts) > 1 {
		paths := make([]string, len(puts))
		for i, p := range puts {
			paths[i] = p.Dst
		}
		var err error
		if have, err = States(ctx, h, paths); err != nil {
			return nil, fmt.Errorf("%s: read the state of %d files: %w", h.Name(), len(paths), err)
		}
	}
	var changed []string
	for _, p := range puts {
		in, err := p.InPlace(have)
		if err != nil {
			return changed, fmt.Errorf("%s: upload %s: %w", h.Name(), p.Dst, err)
		}
		if in {
			continue
		}
		var opts []FileOption
		if p.Owner != "" {
			opts = append(opts, WithOwner(p.Owner))
		}
		c, err := h.Upload(ctx, p.Content, p.Dst, p.Mode, opts...)
		if err != nil {
			return changed, fmt.Errorf("%s: %w", p.Dst, err)
		}
		if c {
			changed = append(changed, p.Dst)
		}
	}
	return changed, nil
}
