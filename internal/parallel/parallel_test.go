package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestForEachBoundAndErrors(t *testing.T) {
	var cur, peak atomic.Int32
	errs := ForEach(context.Background(), 20, 4, func(i int) error {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		cur.Add(-1)
		if i%5 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	if peak.Load() != 4 {
		t.Errorf("peak %d, want the bound 4", peak.Load())
	}
	failed := 0
	for i, err := range errs {
		if (err != nil) != (i%5 == 0) {
			t.Errorf("item %d: err %v", i, err)
		}
		if err != nil {
			failed++
		}
	}
	if failed != 4 {
		t.Errorf("%d errors, want 4", failed)
	}
}

func TestForEachCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ran atomic.Int32
	errs := ForEach(ctx, 5, 1, func(int) error { ran.Add(1); return nil })
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("unexpected %v", err)
		}
	}
	if ran.Load() > 1 {
		t.Errorf("%d items ran after cancel", ran.Load())
	}
}
