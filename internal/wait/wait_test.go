package wait

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	tries := 0
	err := Poll(context.Background(), time.Minute, time.Millisecond, func() error {
		if tries++; tries < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Errorf("Poll until success: %v after %d tries", err, tries)
	}

	final := errors.New("will not mend")
	tries = 0
	err = Poll(context.Background(), time.Minute, time.Millisecond, func() error { tries++; return Stop(final) })
	if err != final || tries != 1 {
		t.Errorf("a Stop error ends the poll at once with the error itself: %v after %d tries", err, tries)
	}

	tries = 0
	err = Poll(context.Background(), 20*time.Millisecond, time.Millisecond, func() error { tries++; return errors.New("never") })
	if err == nil || err.Error() != "never" || tries < 2 {
		t.Errorf("past the limit the last error is returned: %v after %d tries", err, tries)
	}
}
