//go:build integration

package ssh

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/privcloud/privcloud/internal/testsshd"
)

// blockingContent is an upload whose stream never ends: the upload is in flight until something stops it.
type blockingContent struct{ r *io.PipeReader }

func (b blockingContent) Open() (io.ReadCloser, error) { return b.r, nil }
func (blockingContent) SHA256() (string, error)        { return "0000", nil }

// A cancelled upload removes its temporary file itself (TERM reaches its trap before KILL); one whose shell
// is killed outright leaves it, and the next run's sweep removes it.
func TestInterruptedUploadsLeaveNothing(t *testing.T) {
	e := newEnv(t)
	s := e.server(testsshd.Options{})
	e.trust(s.KnownHostsLine(s.HostKey))
	c := connect(t, e.dialer(false), e.host(s, "root"))
	remoteDir := filepath.Join(e.dir, "remote")

	upload := func(ctx context.Context) (chan error, *io.PipeWriter) {
		r, w := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := c.Upload(ctx, blockingContent{r}, filepath.Join(remoteDir, "conf"), 0o644)
			done <- err
		}()
		go w.Write(make([]byte, 4096))
		waitFor(t, 20*time.Second, "the upload's temporary file", func() bool { return len(leftovers(remoteDir)) == 1 })
		return done, w
	}

	ctx, cancel := context.WithCancel(context.Background())
	done, w := upload(ctx)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload: %v", err)
	}
	w.Close()
	if got := leftovers(remoteDir); len(got) != 0 {
		t.Fatalf("a cancelled upload left %v", got)
	}

	done, w = upload(context.Background())
	if err := exec.Command("pkill", "-KILL", "-f", "privcloud-upload "+remoteDir).Run(); err != nil {
		t.Fatalf("kill the upload's shell: %v", err)
	}
	w.Close()
	<-done
	if got := leftovers(remoteDir); len(got) != 1 {
		t.Fatalf("want the killed upload's temporary file left for the sweep, found %v", got)
	}
	removed, err := RemoveStaleUploads(context.Background(), c)
	if err != nil || len(removed) != 1 {
		t.Fatalf("sweep removed %v, %v", removed, err)
	}
	if got := leftovers(remoteDir); len(got) != 0 {
		t.Fatalf("the sweep left %v", got)
	}
	if again, _ := RemoveStaleUploads(context.Background(), c); len(again) != 0 {
		t.Errorf("a second sweep found %v", again)
	}
}
