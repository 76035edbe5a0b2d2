package poll

import (
	"errors"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newPool returns a pool closed at the end of the test.
func newPool(t *testing.T, c Config) *Pool {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pipe returns a non-blocking pipe, closed at the end of the test.
func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// drain reads what is in the pipe without waiting and returns how many bytes.
func drain(fd int) int {
	var b [4096]byte
	total := 0
	for {
		n, err := unix.Read(fd, b[:])
		if n <= 0 || err != nil {
			return total
		}
		total += n
	}
}

func send(t *testing.T, fd int, n int) {
	t.Helper()
	if _, err := unix.Write(fd, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("after 5 s: %s", what)
}

// watchedPipe returns a pipe's write end whose read end p watches,
// draining it, and the count of bytes read; the watch stops with the test.
func watchedPipe(t *testing.T, p *Pool) (w int, got *atomic.Int64) {
	t.Helper()
	r, w := pipe(t)
	got = new(atomic.Int64)
	stop, err := p.Watch(r, func() bool { got.Add(int64(drain(r))); return true })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return w, got
}

func TestReadyServesEveryWrite(t *testing.T) {
	w, got := watchedPipe(t, newPool(t, Config{}))
	for i := 1; i <= 50; i++ {
		send(t, w, 10)
		eventually(t, "the forwarding thread read what was written", func() bool { return got.Load() == int64(10*i) })
	}
}

// Once stop returns, ready neither runs nor is called again, even while
// the descriptor keeps becoming readable: only then may it be closed.
func TestStopWaitsForReady(t *testing.T) {
	p := newPool(t, Config{})
	r, w := pipe(t)
	var stopped, lateCall, calls atomic.Int64
	stop, err := p.Watch(r, func() bool {
		calls.Add(1)
		time.Sleep(100 * time.Microsecond) // widen the window for a racing stop
		if stopped.Load() != 0 {
			lateCall.Add(1)
		}
		drain(r)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for stopped.Load() == 0 {
			unix.Write(w, []byte{1})
			time.Sleep(20 * time.Microsecond)
		}
		for range 100 {
			unix.Write(w, []byte{1})
		}
	}()
	eventually(t, "ready was called", func() bool { return calls.Load() > 10 })
	stop()
	stopped.Store(1)
	stop() // a second stop is harmless
	<-done
	time.Sleep(20 * time.Millisecond)
	if n := lateCall.Load(); n != 0 {
		t.Fatalf("ready ran %d times after stop returned", n)
	}
}

// ready returning false ends the watch: the descriptor stays readable
// (level-triggered), yet ready is not called again.
func TestReadyFalseEndsTheWatch(t *testing.T) {
	p := newPool(t, Config{})
	r, w := pipe(t)
	var calls atomic.Int64
	stop, err := p.Watch(r, func() bool { calls.Add(1); return false })
	if err != nil {
		t.Fatal(err)
	}
	send(t, w, 1) // never drained
	eventually(t, "ready was called", func() bool { return calls.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("ready called %d times after it returned false", n)
	}
	stop() // after the pool dropped it: a no-op
	if p.loops[0].watched.Load() != 0 {
		t.Fatalf("%d descriptors still counted as watched", p.loops[0].watched.Load())
	}
}

// Descriptors spread over the threads, and one descriptor's ready never
// runs twice at once.
func TestThreadsShareTheDescriptors(t *testing.T) {
	p := newPool(t, Config{Threads: 2})
	var inFlight [4]atomic.Int32
	var total atomic.Int64
	var overlap atomic.Bool
	var writers []int
	for i := range inFlight {
		r, w := pipe(t)
		writers = append(writers, w)
		stop, err := p.Watch(r, func() bool {
			if inFlight[i].Add(1) > 1 {
				overlap.Store(true)
			}
			total.Add(int64(drain(r)))
			inFlight[i].Add(-1)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	for _, l := range p.loops {
		if n := l.watched.Load(); n != 2 {
			t.Fatalf("a thread watches %d of 4 descriptors, want 2", n)
		}
	}
	for range 200 {
		for _, w := range writers {
			unix.Write(w, []byte{1})
		}
	}
	eventually(t, "every byte was read", func() bool { return total.Load() == 800 })
	if overlap.Load() {
		t.Fatal("a descriptor's ready ran on two threads at once")
	}
}

// Each thread keeps a P while it sleeps, so New must leave one P for the
// rest of the program: without it, other goroutines would wait for the
// runtime to preempt a sleeping thread.
func TestOnePIsLeftForTheRest(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p, err := New(Config{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close() // before GOMAXPROCS is restored
	if n := runtime.GOMAXPROCS(0); n < p.Threads()+1 {
		t.Fatalf("GOMAXPROCS is %d with %d forwarding threads", n, p.Threads())
	}
	// Twenty sleeps of 1 ms: each wake-up needs a free P, which without
	// one to spare would come only with a preemption (10 ms or more).
	start := time.Now()
	for range 20 {
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("20 sleeps of 1 ms took %v beside the forwarding threads", d)
	}
}

func TestWatchAfterClose(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := pipe(t)
	stop, err := p.Watch(r, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	stop() // the pool is gone: nothing to do, and no hang
	if _, err := p.Watch(r, func() bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
	p.Close()
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{{Threads: -1}, {BusyPoll: -time.Second}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// Busy polling keeps the thread on the CPU after a frame (the point of it:
// no wake-up for the next one); without it the thread sleeps at once.
func TestBusyPollKeepsTheThreadRunning(t *testing.T) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, tc := range []struct {
		busy      time.Duration
		min, max  time.Duration // CPU time used in the 200 ms after one frame
		behaviour string
	}{
		{0, 0, 40 * time.Millisecond, "sleeps"},
		// A polling thread runs the whole window unless other tests' work
		// takes its CPU (make test runs packages in parallel on 2 cores):
		// a quarter of it still tells it from a sleeping one.
		{time.Hour, 50 * time.Millisecond, time.Hour, "polls"},
	} {
		t.Run(tc.behaviour, func(t *testing.T) {
			w, got := watchedPipe(t, newPool(t, Config{BusyPoll: tc.busy}))
			send(t, w, 1)
			eventually(t, "the frame was read", func() bool { return got.Load() == 1 })
			before := cpu()
			time.Sleep(200 * time.Millisecond)
			if used := cpu() - before; used < tc.min || used > tc.max {
				t.Fatalf("the process used %v of CPU in 200 ms after a frame; a thread that %s uses %v to %v", used, tc.behaviour, tc.min, tc.max)
			}
		})
	}
}
