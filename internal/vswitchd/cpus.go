package vswitchd

import (
	"cmp"
	"flag"
	"fmt"
	"runtime"
	"time"

	"github.com/vswitch/vswitch/internal/port/poll"
)

// DefaultThreads is how many forwarding threads the daemon runs unless
// told: half the CPUs it may use (GOMAXPROCS at start, which follows a
// cgroup CPU limit), at least one. The workloads' own kernel work (the TCP
// stacks on both sides of a stream) needs the other CPUs, and on a small
// host one thread forwarding both directions beats two that keep waking
// each other.
func DefaultThreads() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// DefaultBusyPoll is how long a forwarding thread keeps polling after its
// last frame unless told. Within a stream the next frame (the next
// super-frame, the ACK coming back) is there sooner, and a thread that
// polls for it saves a sleep and a wake-up: bench/compare measured TCP
// between two TAPs at 13.8-14.9 Gbit/s against 11.5-11.9 sleeping at once
// (2 vCPUs), and no loss in UDP-64 packets per second. It costs at most
// 50 µs of CPU per frame, none on an idle switch; a busy one keeps its
// thread on the CPU.
const DefaultBusyPoll = 50 * time.Microsecond

// PollConfig is the forwarding threads' configuration for o.Threads and
// o.BusyPoll, defaults filled in.
func (o Options) PollConfig() poll.Config {
	busy := o.BusyPoll
	switch {
	case busy == 0:
		busy = DefaultBusyPoll
	case busy < 0:
		busy = 0
	}
	return poll.Config{Threads: cmp.Or(o.Threads, DefaultThreads()), BusyPoll: busy}
}

// ForwardingFlags registers -threads (and its former name -cpus) and
// -busy-poll on fs, setting o's Threads and BusyPoll. On the command line
// -busy-poll 0 means "sleep at once", which Options spells negative.
func ForwardingFlags(fs *flag.FlagSet, o *Options) {
	fs.IntVar(&o.Threads, "cpus", 0, "the former name of -threads")
	fs.IntVar(&o.Threads, "threads", 0, fmt.Sprintf("forwarding threads, each a CPU when busy (0: half the machine's CPUs, here %d)", DefaultThreads()))
	fs.Var(busyPollFlag{&o.BusyPoll}, "busy-poll", "the `duration` a forwarding thread keeps polling after its last frame before it sleeps: longer gives lower latency for a busier CPU (0: sleep at once)")
}

// busyPollFlag is -busy-poll: a duration whose 0 is stored as -1.
type busyPollFlag struct{ d *time.Duration }

func (f busyPollFlag) String() string {
	switch {
	case f.d == nil:
		return ""
	case *f.d == 0:
		return DefaultBusyPoll.String()
	case *f.d < 0:
		return "0s"
	}
	return f.d.String()
}

func (f busyPollFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return err
	case d < 0:
		return fmt.Errorf("%v is negative: want 0 (sleep at once) or a positive duration", d)
	case d == 0:
		d = -1
	}
	*f.d = d
	return nil
}
