package tuning_test

import (
	"context"
	"fmt"
	"log"
	"runtime"

	"github.com/xdpingest/xdpingest/tuning"
)

// Apply a profile for the length of a run and put everything back at the
// end, as `xdpingest run --tune afxdp` does.
func ExampleApply() {
	ctx := context.Background()
	p, err := tuning.LoadProfile("afxdp")
	if err != nil {
		log.Fatal(err) // unknown profile: errors.Is(err, tuning.ErrBadInput)
	}
	a, err := tuning.Apply(ctx, "eth1", p, tuning.Options{})
	if a == nil {
		log.Fatal(err) // bad input, or failed before changing anything
	}
	defer func() {
		r, err := a.Revert(context.WithoutCancel(ctx))
		if err != nil || r.Outcome() != tuning.Complete {
			log.Printf("revert of %s: %v, %v", p.Name, r.Outcome(), err)
		}
	}()
	if err != nil {
		log.Printf("tuning rolled back: %v", err)
	}
	log.Printf("tuning %s: %v", p.Name, a.Outcome())
	// ... run ...
}

// Place one worker per queue and pin each on its own locked thread.
func ExamplePlanWorkers() {
	qm, err := tuning.DiscoverQueues(tuning.DefaultRoots(), "eth1")
	if err != nil {
		log.Fatal(err)
	}
	allowed, err := tuning.AllowedCPUs()
	if err != nil {
		log.Fatal(err)
	}
	workers, err := tuning.PlanWorkers(qm, nil, allowed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("workers:", tuning.FormatWorkers(workers))
	for _, w := range workers {
		go func() {
			// No UnlockOSThread: a pinned thread must not go back to the
			// runtime's pool; locked at exit, it is discarded.
			runtime.LockOSThread()
			if err := tuning.PinThread(w.CPU); err != nil {
				log.Print(err)
			}
			// ... receive from queue w.Queue ...
		}()
	}
}
