package fdio

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// FD is a port's non-blocking descriptor, used one of two ways: driven by
// a forwarding thread that waits on PollFD itself (package poll) and calls
// Control, or read by a goroutine that waits in the Go runtime's poller
// (Wait). The runtime's poller watches the descriptor only once Wait is
// first called: a descriptor in its epoll set would wake an idle runtime
// thread for every frame a forwarding thread is about to read anyway.
type FD struct {
	f  *os.File // not in the runtime's poller: counts the descriptor's users so that Close never races a system call
	rc syscall.RawConn

	mu     sync.Mutex
	w      *os.File // a duplicate in the runtime's poller, made by the first Wait
	wrc    syscall.RawConn
	closed bool
}

// NewFD takes over fd (made non-blocking here); name is for errors.
func NewFD(fd int, name string) (*FD, error) {
	// os.NewFile puts a non-blocking descriptor into the runtime's poller
	// and leaves a blocking one alone: hand it over blocking.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	d := &FD{f: os.NewFile(uintptr(fd), name)}
	if err := unix.SetNonblock(fd, true); err != nil {
		d.f.Close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	var err error
	if d.rc, err = d.f.SyscallConn(); err != nil {
		d.f.Close()
		return nil, err
	}
	return d, nil
}

// PollFD returns the descriptor, for a forwarding thread's epoll set. It
// stays valid until Close.
func (d *FD) PollFD() int { return int(d.f.Fd()) }

// Control calls fn once with the descriptor, which stays open meanwhile;
// after Close it returns the runtime poller's "use of closed file" error
// instead (OpError with closed set turns it into net.ErrClosed).
func (d *FD) Control(fn func(fd uintptr)) error { return d.rc.Control(fn) }

// Wait calls fn until it returns true, waiting in the runtime's poller for
// the descriptor to be readable whenever fn returns false. Close unblocks it
// with an error, as for Control.
func (d *FD) Wait(fn func(fd uintptr) bool) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return os.ErrClosed
	}
	if d.w == nil {
		var err error
		if d.w, d.wrc, err = d.dup(); err != nil {
			d.mu.Unlock()
			return err
		}
	}
	rc := d.wrc
	d.mu.Unlock()
	return rc.Read(fn)
}

// dup makes the duplicate that the runtime's poller watches: the same open
// file, so it is readable exactly when the original is.
func (d *FD) dup() (*os.File, syscall.RawConn, error) {
	var nfd int
	var err error
	if cerr := d.rc.Control(func(fd uintptr) { nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, nil, cerr
	}
	if err != nil {
		return nil, nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	w := os.NewFile(uintptr(nfd), d.f.Name()) // non-blocking: goes into the runtime's poller
	rc, err := w.SyscallConn()
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, rc, nil
}

// Close unblocks Wait and closes the descriptor once nothing uses it.
func (d *FD) Close() error {
	d.mu.Lock()
	d.closed = true
	w := d.w
	d.mu.Unlock()
	if w != nil {
		w.Close()
	}
	return d.f.Close()
}
