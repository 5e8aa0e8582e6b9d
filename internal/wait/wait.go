// Package wait polls a condition until it holds, the one way privcloud waits on hosts and the API server:
// on conditions with deadlines, never on fixed sleeps.
package wait

import (
	"context"
	"time"
)

// Poll calls try every interval until it returns nil, the limit passes (then try's last error is returned) or
// ctx ends.
func Poll(ctx context.Context, limit, every time.Duration, try func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil {
			return nil
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
