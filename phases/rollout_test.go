package phases

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
)

// turns let size hosts at once, and none after a failure.
func TestRolloutTurns(t *testing.T) {
	ro := rolloutOf(&workflow.Run{})
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := ro.turn(context.Background(), "kubelet", 2)
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("%d hosts at once, want 2", most.Load())
	}

	release, err := ro.turn(context.Background(), "kube-apiserver", 1)
	if err != nil {
		t.Fatal(err)
	}
	ro.fail("kube-apiserver", "h1")
	release()
	_, err = ro.turn(context.Background(), "kube-apiserver", 1)
	var stopped *rolloutStopped
	if !errors.As(err, &stopped) || stopped.host != "h1" {
		t.Errorf("a turn after a failed gate: %v", err)
	}
	if _, err := ro.turn(context.Background(), "kube-scheduler", 1); err != nil {
		t.Errorf("another unit's turn is not stopped by it: %v", err)
	}
}

func TestTurnSize(t *testing.T) {
	c := &api.Cluster{}
	for i := range 25 {
		role := api.RoleWorker
		if i < 3 {
			role = api.RoleControlPlane
		}
		c.Spec.Hosts = append(c.Spec.Hosts, api.Host{Name: "h", Roles: []api.Role{role}})
	}
	r := &workflow.Run{Cluster: c}
	kubelet, _ := serviceOf("kubelet")
	apiserver, _ := serviceOf("kube-apiserver")
	if n := turnSize(r, kubelet); n != 2 {
		t.Errorf("kubelets of 25 nodes go %d at a time, want 2", n)
	}
	if n := turnSize(r, apiserver); n != 1 {
		t.Errorf("API servers go %d at a time, want 1", n)
	}
}
