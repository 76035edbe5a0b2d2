package vswitchd

import (
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
		c := PollConfig(tc.threads, tc.busy)
		if c.Threads != tc.wantThreads || c.BusyPoll != tc.wantBusy {
			t.Errorf("PollConfig(%d, %v) = %d threads, busy-poll %v; want %d, %v", tc.threads, tc.busy, c.Threads, c.BusyPoll, tc.wantThreads, tc.wantBusy)
		}
	}
}
