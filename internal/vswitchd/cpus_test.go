package vswitchd

import (
	"flag"
	"io"
	"testing"
	"time"
)

func TestPollConfig(t *testing.T) {
	for _, tc := range []struct {
		threads     int
		busy        time.Duration
		wantThreads int
		wantBusy    time.Duration
	}{
		{0, 0, DefaultThreads(), DefaultBusyPoll}, // the daemon's defaults
		{3, -1, 3, 0},                    // "never poll"
		{1, time.Second, 1, time.Second}, // a thread that polls for good
		{0, time.Microsecond, DefaultThreads(), time.Microsecond},
	} {
		c := Options{Threads: tc.threads, BusyPoll: tc.busy}.PollConfig()
		if c.Threads != tc.wantThreads || c.BusyPoll != tc.wantBusy {
			t.Errorf("PollConfig(%d, %v) = %d threads, busy-poll %v; want %d, %v", tc.threads, tc.busy, c.Threads, c.BusyPoll, tc.wantThreads, tc.wantBusy)
		}
	}
}

// The command line's -busy-poll 0 means "sleep at once"; no flag, the default.
func TestForwardingFlags(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		wantThreads int
		wantBusy    time.Duration
	}{
		{nil, DefaultThreads(), DefaultBusyPoll},
		{[]string{"-busy-poll", "0"}, DefaultThreads(), 0},
		{[]string{"-busy-poll", "200us", "-threads", "3"}, 3, 200 * time.Microsecond},
		{[]string{"-cpus", "2"}, 2, DefaultBusyPoll},
	} {
		var o Options
		fs := flag.NewFlagSet("vswitchd", flag.ContinueOnError)
		ForwardingFlags(fs, &o)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if c := o.PollConfig(); c.Threads != tc.wantThreads || c.BusyPoll != tc.wantBusy {
			t.Errorf("%q: %d threads, busy-poll %v; want %d, %v", tc.args, c.Threads, c.BusyPoll, tc.wantThreads, tc.wantBusy)
		}
	}
	fs := flag.NewFlagSet("vswitchd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ForwardingFlags(fs, &Options{})
	if err := fs.Parse([]string{"-busy-poll", "-1s"}); err == nil {
		t.Error("-busy-poll -1s accepted")
	}
}
