package ssh_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
)

func TestLineDiff(t *testing.T) {
	cases := []struct{ old, new, want string }{
		{"a\nb\nc", "a\nx\nc", "-b\n+x"},
		{"a\nb", "a\nb\nc", "+c"},
		{"a\nb\nc", "a\nc", "-b"},
		{"same", "same", ""},
	}
	for _, tc := range cases {
		if got := ssh.LineDiff(tc.old, tc.new); got != tc.want {
			t.Errorf("LineDiff(%q, %q) = %q, want %q", tc.old, tc.new, got, tc.want)
		}
	}
}

func TestOfflineRecorder(t *testing.T) {
	ctx := context.Background()
	var actions []ssh.Action
	r := ssh.NewRecorder("cp1", nil, func(a ssh.Action) { actions = append(actions, a) })
	if _, err := r.ReadFile(ctx, "/etc/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("offline ReadFile: %v, want not-exist", err)
	}
	changed, err := r.Upload(ctx, ssh.Bytes("hello\n"), "/etc/x", 0o600)
	if err != nil || !changed {
		t.Fatalf("Upload = %v, %v; want a planned change", changed, err)
	}
	if _, err := r.Run(ctx, "systemctl start x"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(ctx, "uname -r", ssh.ReadOnly()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Dial(ctx, "unix", "/run/containerd/containerd.sock"); err == nil {
		t.Error("a dry run must not dial services on the host")
	}
	if len(actions) != 2 || actions[0].Kind != "write" || actions[0].Mode != 0o600 || actions[0].Size != 6 || actions[1].Cmd != "systemctl start x" {
		t.Errorf("actions = %+v", actions)
	}
}

func TestRecorderSkipsUnchangedFiles(t *testing.T) {
	ctx := context.Background()
	real := sshtest.NewFake("cp1")
	real.SetFile("/etc/x", []byte("same\n"), 0o644)
	var n int
	r := ssh.NewRecorder("cp1", real, func(ssh.Action) { n++ })
	changed, err := r.Upload(ctx, ssh.Bytes("same\n"), "/etc/x", 0o644)
	if err != nil || changed || n != 0 {
		t.Errorf("unchanged file: changed=%v err=%v actions=%d", changed, err, n)
	}
}
