// Package wait polls a condition until it holds, the one way privcloud waits on hosts and the API server:
// on conditions with deadlines, never on fixed sleeps.
package wait

import (
	"context"
	"errors"
	"time"
)

// stopError ends a Poll at once: a failure that waiting will not mend.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }

// Stop marks err as final: Poll returns it without trying again.
func Stop(err error) error { return stopError{err} }

// Poll calls try every interval until it returns nil, the limit passes (then try's last error is returned),
// try returns an error made with Stop, or ctx ends.
func Poll(ctx context.Context, limit, every time.Duration, try func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil {
			return nil
		}
		var stop stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}
