// Package parallel runs work over many items with a concurrency bound.
package parallel

import (
	"context"
	"errors"
	"sync"
)

// ForEach calls fn(i) for i in [0, n), at most limit at a time, starting them in index order. A slot is taken
// before a goroutine starts, so no more than limit goroutines exist at once however large n is. Items not
// started when ctx ends get ctx's error. It returns fn's error for each item, by index.
func ForEach(ctx context.Context, n, limit int, fn func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, max(1, limit))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}

// Each runs f on every item at once and joins their errors: for the few hosts of one role (etcd members, the
// control planes to stop), where every one must be worked on together.
func Each[T any](items []T, f func(T) error) error {
	return errors.Join(ForEach(context.Background(), len(items), len(items), func(i int) error { return f(items[i]) })...)
}
