package daemon

import (
	"errors"
	"fmt"
	"time"
)

// ErrTimeout marks a host step that did not return within the daemon's
// deadline (SetHostTimeout): the daemon goes on without it and tries again
// on the next converge, once the late step has returned.
var ErrTimeout = errors.New("the host did not answer in time")

// DefaultHostTimeout bounds each host step (making a TAP, moving an
// address) unless SetHostTimeout says otherwise.
const DefaultHostTimeout = 10 * time.Second

// SetHostTimeout sets how long one host step may take before the daemon
// gives up on it.
func (d *Daemon) SetHostTimeout(t time.Duration) {
	d.mu.Lock()
	d.timeout = t
	d.mu.Unlock()
}

// hostStep runs one host operation, named by key, with the daemon's
// deadline; d.mu is held. A step that does not return in time fails with
// ErrTimeout and keeps running on its own: late gets its result when it
// returns (to release what it made; the records let the sweep remove the
// rest), and until then another step on the same key is not started, so
// two attempts never work on one object at once. A panic in the step is
// the caller's panic, as if the step had run on the caller's goroutine.
func hostStep[T any](d *Daemon, key string, f func() (T, error), late func(T)) (T, error) {
	var zero T
	if d.busy[key] {
		return zero, fmt.Errorf("%w: an earlier attempt on %s has not returned yet", ErrTimeout, key)
	}
	type result struct {
		v        T
		err      error
		panicked any
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			r.panicked = recover()
			ch <- r
		}()
		r.v, r.err = f()
	}()
	t := time.NewTimer(d.timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.panicked != nil {
			panic(r.panicked)
		}
		return r.v, r.err
	case <-t.C:
	}
	if d.busy == nil {
		d.busy = map[string]bool{}
	}
	d.busy[key] = true
	d.log.Warn("host step timed out; it goes on alone", "step", key, "after", d.timeout)
	go func() {
		r := <-ch
		if r.panicked == nil && r.err == nil && late != nil {
			late(r.v)
		}
		d.mu.Lock()
		delete(d.busy, key)
		d.mu.Unlock()
		d.log.Info("late host step returned", "step", key, "err", r.err, "panic", r.panicked)
	}()
	return zero, fmt.Errorf("%w (%v)", ErrTimeout, d.timeout)
}
