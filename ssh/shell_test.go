package ssh

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// oneByteReader hands out its data a byte at a time, so every marker arrives split across reads.
type oneByteReader struct{ data []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}

func TestFramedStreamSplitsCommandsOutputs(t *testing.T) {
	const token = "privcloud-end-0123"
	stream := "out\n\n" + token + " 0\n" + // ends in a newline
		"no newline\n" + token + " 7\n" + // does not
		"\n" + token + " 0\n" + // nothing at all
		"\x00bin\n" + token[:10] + "ary\n" + token + " 1\n" // a NUL and the marker's start in the output
	for name, r := range map[string]io.Reader{"whole": bytes.NewReader([]byte(stream)), "byte by byte": &oneByteReader{data: []byte(stream)}} {
		f := newFramedStream(r, token)
		want := []struct {
			out  string
			code int
		}{{"out\n", 0}, {"no newline", 7}, {"", 0}, {"\x00bin\n" + token[:10] + "ary", 1}}
		for i, w := range want {
			var out bytes.Buffer
			end := <-f.next(&out)
			if end.err != nil || end.code != w.code || out.String() != w.out {
				t.Errorf("%s: command %d: %q, exit %d, %v; want %q, exit %d", name, i, out.String(), end.code, end.err, w.out, w.code)
			}
		}
		// the stream ended: the next command learns it at once
		select {
		case end := <-f.next(io.Discard):
			if end.err == nil {
				t.Errorf("%s: a command after the stream's end must fail", name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: a command after the stream's end was never answered", name)
		}
	}
}

func TestFramedStreamAbortAnswersWaitingCommand(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	f := newFramedStream(r, "privcloud-end-x")
	end := f.next(io.Discard)
	w.Write([]byte("partial output")) // the command never ends
	f.abort()
	select {
	case e := <-end:
		if e.err == nil {
			t.Error("an aborted command must fail")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("abort left the waiting command unanswered")
	}
	if e := <-f.next(io.Discard); e.err == nil {
		t.Error("a command after abort must fail")
	}
}
