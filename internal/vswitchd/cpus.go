package vswitchd

import "runtime"

// DefaultThreads is how many forwarding threads the daemon runs unless
// told: half the machine's CPUs, at least one. The rest stay free for the
// workloads: on a small host the workloads' own kernel work (the TCP
// stacks on both sides of a stream) needs the other CPUs, and one thread
// forwarding both directions beats two that keep waking each other.
func DefaultThreads() int { return max(1, runtime.NumCPU()/2) }
