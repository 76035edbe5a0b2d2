// Package poll runs the reads of descriptor-backed ports (TAP devices,
// AF_PACKET sockets, QEMU's unix sockets) on forwarding threads of its
// own. Each thread waits in epoll_wait for any of its ports to become
// readable and calls that port's ready function, which reads and forwards
// one batch without waiting.
//
// The threads wait outside the Go scheduler: epoll_wait is made as a raw
// system call, so a thread keeps its P while it sleeps and nothing in the
// runtime (handing the P to another thread, waking a spinning thread to
// look for work, the runtime's own poller) runs between a frame's arrival
// and its forwarding. On a small virtual machine each such wake-up costs
// tens of microseconds: measured with ping through one switch, a goroutine
// per port parked in the runtime's poller took 110-150 µs, the same loop
// as a runtime-aware system call 105-130 µs, this one 75-95 µs. The price
// is that each thread holds a P while it forwards: New raises GOMAXPROCS
// so that one P is always left for everything else. The goroutine is not
// locked to its thread: when the runtime preempts it (every 10 ms, as any
// goroutine that never blocks), it resumes on whichever thread is free
// instead of handing its P to another thread and back. A thread that has
// had no frame for a second sleeps the runtime's way instead, its P handed
// back, so that an idle switch lets its process sleep too.
package poll

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Watch after Close.
var ErrClosed = errors.New("poll: closed")

// Config configures a Pool; zero fields take defaults.
type Config struct {
	// Threads is the number of forwarding threads; 1 if 0.
	Threads int
	// BusyPoll keeps a thread polling, without sleeping, for this long
	// after its last frame: the next frame is picked up without a
	// wake-up, at the price of a CPU kept busy. 0 (the default) sleeps as
	// soon as nothing is left to read.
	BusyPoll time.Duration
}

// maxSleep bounds one sleep in epoll_wait; the thread yields to the Go
// scheduler after each. The runtime interrupts a sleeping thread with a
// signal when it needs the goroutine to stop (for the garbage collector,
// or after 10 ms "running"), and the thread yields then too; the bound
// matters where asynchronous preemption is off (GODEBUG=asyncpreemptoff=1).
const maxSleep = 50 * time.Millisecond

// idleAfter is how long a thread goes without frames before it sleeps the
// runtime's way: in a runtime-aware epoll_wait without a time limit, its P
// handed back, so that the runtime neither preempts it every 10 ms nor
// wakes it every maxSleep (about 250 context switches a second per thread
// here). The first frame after that pays for taking a P again. A variable
// for the tests.
var idleAfter = time.Second

// maxEvents is how many ready descriptors one epoll_wait returns at most.
const maxEvents = 128

// Pool is a set of forwarding threads. Its methods are safe for concurrent
// use. It implements l2.Poller.
type Pool struct {
	loops     []*loop // fixed by New
	closeOnce sync.Once
}

// running counts the forwarding threads of every pool, for GOMAXPROCS.
var running struct {
	sync.Mutex
	n int
}

// New starts c.Threads forwarding threads, raising GOMAXPROCS to one more
// than all the pools' threads together if it is lower (and never lowering
// it again, also after Close).
func New(c Config) (*Pool, error) {
	if c.Threads < 0 || c.BusyPoll < 0 {
		return nil, fmt.Errorf("poll: %d threads, busy-poll %v: want neither negative", c.Threads, c.BusyPoll)
	}
	p := &Pool{}
	for range max(c.Threads, 1) {
		l, err := newLoop(c.BusyPoll)
		if err != nil {
			for _, l := range p.loops {
				l.release()
			}
			return nil, err
		}
		p.loops = append(p.loops, l)
	}
	running.Lock()
	running.n += len(p.loops)
	// Set even when high enough: an explicit setting also stops the
	// runtime from lowering it later to follow a cgroup CPU limit.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), running.n+1))
	running.Unlock()
	for _, l := range p.loops {
		go l.run()
	}
	return p, nil
}

// Threads returns the number of forwarding threads.
func (p *Pool) Threads() int { return len(p.loops) }

// Watched returns the number of descriptors watched.
func (p *Pool) Watched() int {
	n := 0
	for _, l := range p.loops {
		n += int(l.watched.Load())
	}
	return n
}

// Watch calls ready on one of the pool's threads (the one watching the
// fewest descriptors) whenever fd is readable, until ready returns false or
// stop is called. ready must read without waiting; it is never called
// concurrently with itself. Once stop returns, ready is not running and
// will not be called again: only then may fd be closed. Neither Watch nor
// stop may be called from a ready function (they wait for its thread).
func (p *Pool) Watch(fd int, ready func() bool) (stop func(), err error) {
	l := p.loops[0]
	for _, o := range p.loops[1:] {
		if o.watched.Load() < l.watched.Load() {
			l = o
		}
	}
	var tok, gen uint32
	err = l.do(func() error {
		tok, gen = l.add(fd, ready)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(tok)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			l.remove(tok)
			return os.NewSyscallError("epoll_ctl add", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.do(func() error {
				if s := &l.slots[tok]; s.gen == gen && s.ready != nil {
					unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
					l.remove(tok)
				}
				return nil
			})
		})
	}, nil
}

// Close stops the threads once they have served what was asked of them;
// Watch fails from then on. A descriptor still watched stays open:
// stopping is the watcher's job.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		for _, l := range p.loops {
			l.close()
		}
		running.Lock()
		running.n -= len(p.loops)
		running.Unlock()
	})
	return nil
}

// loop is one forwarding thread and its epoll set. Its slots belong to the
// thread: other goroutines change them only through do.
type loop struct {
	epfd, wake int
	busy, idle time.Duration
	epoch      time.Time
	watched    atomic.Int32
	done       chan struct{}

	mu     sync.Mutex
	reqs   []request
	closed bool

	slots []slot   // by token; token 0 is the wake-up eventfd
	free  []uint32 // unused tokens
}

type slot struct {
	fd    int
	gen   uint32 // told apart from an earlier watcher of the same token
	ready func() bool
}

type request struct {
	fn   func() error
	done chan error
}

func newLoop(busy time.Duration) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 0}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl add", err)
	}
	return &loop{epfd: epfd, wake: wake, busy: busy, idle: idleAfter, epoch: time.Now(), done: make(chan struct{}), slots: make([]slot, 1)}, nil
}

// clock is the loop's monotonic time in nanoseconds.
func (l *loop) clock() int64 { return int64(time.Since(l.epoch)) }

// do runs fn on the loop's thread and returns its error.
func (l *loop) do(fn func() error) error {
	r := request{fn: fn, done: make(chan error, 1)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done // whatever the thread was running has returned
		return ErrClosed
	}
	l.reqs = append(l.reqs, r)
	l.kick() // under mu: once closed is seen, the eventfd may be closed and its number reused
	l.mu.Unlock()
	return <-r.done
}

func (l *loop) kick() {
	one := uint64(1)
	unix.Write(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
}

func (l *loop) close() {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	l.mu.Unlock()
	if already {
		return
	}
	l.kick()
	<-l.done
	l.release()
}

// release closes the loop's descriptors (its thread has ended, or never ran).
func (l *loop) release() {
	unix.Close(l.epfd)
	unix.Close(l.wake)
}

// add takes a token for fd (on the loop's thread).
func (l *loop) add(fd int, ready func() bool) (tok, gen uint32) {
	if n := len(l.free); n > 0 {
		tok, l.free = l.free[n-1], l.free[:n-1]
	} else {
		tok = uint32(len(l.slots))
		l.slots = append(l.slots, slot{})
	}
	s := &l.slots[tok]
	s.fd, s.ready = fd, ready
	s.gen++
	l.watched.Add(1)
	return tok, s.gen
}

// remove frees a token (on the loop's thread).
func (l *loop) remove(tok uint32) {
	l.slots[tok].ready = nil
	l.free = append(l.free, tok)
	l.watched.Add(-1)
}

// serve runs the queued requests and reports whether the loop is closed.
func (l *loop) serve() bool {
	var b [8]byte
	unix.Read(l.wake, b[:])
	l.mu.Lock()
	reqs, closed := l.reqs, l.closed
	l.reqs = nil
	l.mu.Unlock()
	for _, r := range reqs {
		r.done <- r.fn()
	}
	return closed
}

// run is the forwarding thread's loop.
func (l *loop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, maxEvents)
	var lastFrame int64 // l.clock() of the last batch of events with frames
	for {
		var n int
		switch since := l.clock() - lastFrame; {
		case since < int64(l.busy):
			n = wait(l.epfd, events, 0)
		case since >= int64(l.idle):
			if n = sleep(l.epfd, events); n == 0 {
				continue // a signal
			}
		default:
			if n = wait(l.epfd, events, int(maxSleep/time.Millisecond)); n == 0 {
				// A timeout, or a signal: the runtime asking this
				// goroutine to stop (for the garbage collector, or as
				// its 10 ms preemption). Yield here rather than rely on
				// the next function prologue to notice.
				runtime.Gosched()
				continue
			}
		}
		frames := false
		for _, ev := range events[:n] {
			tok := uint32(ev.Fd)
			if tok == 0 {
				if l.serve() {
					return
				}
				continue
			}
			frames = true
			if s := &l.slots[tok]; s.ready != nil && !s.ready() {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
				l.remove(tok)
			}
		}
		if frames {
			lastFrame = l.clock()
		}
	}
}

// wait is epoll_wait as a raw system call (see the package comment): the
// number of events, 0 on a timeout or an interrupting signal. Not inlined:
// its prologue is where a busy-polling loop can be preempted, the raw
// system call path below it having none.
//
//go:noinline
func wait(epfd int, events []unix.EpollEvent, timeoutMS int) int {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(timeoutMS), 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

// sleep is epoll_wait without a time limit as the runtime's system call:
// the goroutine's P is handed on while it waits (see idleAfter). The
// number of events, 0 if a signal interrupted it.
func sleep(epfd int, events []unix.EpollEvent) int {
	n, err := unix.EpollWait(epfd, events, -1)
	if err != nil {
		return 0
	}
	return n
}
