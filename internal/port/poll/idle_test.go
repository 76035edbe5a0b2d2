package poll

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// contextSwitches sums the voluntary context switches of every thread of
// the process: a thread that keeps waking up sleeps again each time (a
// voluntary switch); involuntary ones are preemptions by whatever else
// the machine runs (other test packages at once in CI), not this code.
func contextSwitches(t *testing.T) int {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && k == "voluntary_ctxt_switches" {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				total += n
			}
		}
	}
	return total
}

// A thread that has had no frame for idleAfter sleeps so that the process
// does too (no 10 ms preemptions, no maxSleep time-outs), and still serves
// the next frame.
func TestIdleThreadsLetTheProcessSleep(t *testing.T) {
	old := idleAfter
	idleAfter = 100 * time.Millisecond // read by New's loops, made below
	t.Cleanup(func() { idleAfter = old })
	p := newPool(t, Config{Threads: 2, BusyPoll: 50 * time.Microsecond})
	w, got := watchedPipe(t, p)
	send(t, w, 1)
	eventually(t, "the first write served", func() bool { return got.Load() == 1 })
	time.Sleep(300 * time.Millisecond) // past idleAfter
	c0 := contextSwitches(t)
	time.Sleep(500 * time.Millisecond)
	// Measured (voluntary and involuntary): 15-25 with the threads asleep
	// (the runtime's monitor still looks in); threads that sleep in a raw
	// epoll_wait make it about 180. Involuntary switches alone went to 84
	// once with a cluster test loading both cores: they are not counted.
	n := contextSwitches(t) - c0
	t.Logf("%d context switches in 0.5 s with two idle forwarding threads", n)
	if n > 60 {
		t.Errorf("%d context switches in 0.5 s with two idle forwarding threads: they keep waking", n)
	}
	send(t, w, 1)
	eventually(t, "a write after the threads went idle served", func() bool { return got.Load() == 2 })
}
