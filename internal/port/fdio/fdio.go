// Package fdio is the frame I/O that the file-descriptor backends share:
// batches of frames read or written one system call per frame, either by
// a goroutine that waits in the Go runtime's poller or, without waiting, by
// a forwarding thread that waits on the descriptor itself (FD, package
// poll); Close unblocks a reader, nothing waits on a full queue (the rest of
// the batch is dropped instead), and nothing allocates per frame.
package fdio

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// RecvFunc receives one frame from fd into b and returns its length.
type RecvFunc func(fd int, b []byte) (int, error)

// SendFunc sends the frame b[off:] on fd; it may write into the headroom b[:off].
type SendFunc func(fd int, b []byte, off int) error

// Conn is how a Reader or Writer reaches its descriptor: an *FD, or a
// net.Conn's syscall.RawConn through RawConn.
type Conn interface {
	// Wait calls fn until it returns true, waiting for the descriptor to
	// be readable whenever it returns false.
	Wait(fn func(fd uintptr) bool) error
	// Control calls fn once with the descriptor.
	Control(fn func(fd uintptr)) error
}

// RawConn adapts a syscall.RawConn (of a socket the runtime's poller
// watches) to Conn.
func RawConn(rc syscall.RawConn) Conn { return rawConn{rc} }

type rawConn struct{ rc syscall.RawConn }

func (c rawConn) Wait(fn func(uintptr) bool) error { return c.rc.Read(fn) }
func (c rawConn) Control(fn func(uintptr)) error   { return c.rc.Control(fn) }

// Reader reads batches of frames. One goroutine reads at a time.
type Reader struct {
	c       Conn
	recv    RecvFunc
	max     int // longest frame accepted; 0: as long as the buffer
	hdr     int // bytes of header read in front of each frame, into the headroom
	dropped atomic.Uint64

	bufs  [][]byte
	sizes []int
	off   int
	n     int
	err   error
	fn    func(uintptr) bool // made once: passing a method value would allocate per call
	now   func(uintptr)
}

// NewReader reads with recv; frames longer than maxFrame (if not 0), or
// filling a whole buffer (perhaps cut short), are dropped and counted.
// Each read starts hdr bytes before the frame's offset: a header (such as
// a virtio-net header) that the device puts in front of every frame lands
// in the headroom; a read shorter than hdr is dropped.
func NewReader(c Conn, recv RecvFunc, maxFrame, hdr int) *Reader {
	r := &Reader{c: c, recv: recv, max: maxFrame, hdr: hdr}
	r.fn = r.some
	r.now = func(fd uintptr) { r.some(fd) }
	return r
}

// Read waits until at least one frame is there, then reads frames into
// bufs[i][offset:] until none is left or the batch is full.
func (r *Reader) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return r.read(bufs, sizes, offset, true)
}

// ReadNow reads like Read but never waits: it returns 0 when no frame is there.
func (r *Reader) ReadNow(bufs [][]byte, sizes []int, offset int) (int, error) {
	return r.read(bufs, sizes, offset, false)
}

func (r *Reader) read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	if offset < r.hdr {
		return 0, os.NewSyscallError("read (no headroom for the header)", unix.EINVAL)
	}
	r.bufs, r.sizes, r.off, r.n, r.err = bufs, sizes, offset, 0, nil
	var err error
	if wait {
		err = r.c.Wait(r.fn)
	} else {
		err = r.c.Control(r.now)
	}
	n := r.n
	if err == nil {
		err = r.err
	}
	r.bufs, r.sizes, r.err = nil, nil, nil
	return n, err
}

func (r *Reader) some(fd uintptr) bool {
	for r.n < len(r.bufs) {
		b := r.bufs[r.n][r.off-r.hdr:]
		n, err := r.recv(int(fd), b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return r.n > 0 // false: wait for the poller
		case err != nil:
			r.err = os.NewSyscallError("read", err)
			return true
		case n >= len(b) || n < r.hdr || r.max > 0 && n-r.hdr > r.max:
			r.dropped.Add(1)
			continue
		}
		r.sizes[r.n] = n - r.hdr
		r.n++
	}
	return true
}

// Dropped returns how many frames were too long (or shorter than the header).
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// Writer writes batches of frames; it is safe for concurrent use.
type Writer struct {
	c    Conn
	send SendFunc
	op   string

	mu   sync.Mutex
	bufs [][]byte
	offs []int
	n    int
	err  error
	fn   func(uintptr)
}

// NewWriter sends with send; op names the system call in errors.
func NewWriter(c Conn, send SendFunc, op string) *Writer {
	w := &Writer{c: c, send: send, op: op}
	w.fn = w.some
	return w
}

// Write sends the frames in order, never waiting: it returns how many went
// out, stopping at a full queue (EAGAIN, ENOBUFS: err is nil) or an error.
func (w *Writer) Write(bufs [][]byte, offsets []int) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.bufs, w.offs, w.n, w.err = bufs, offsets, 0, nil
	err := w.c.Control(w.fn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.bufs, w.offs, w.err = nil, nil, nil
	return n, err
}

func (w *Writer) some(fd uintptr) {
	for w.n < len(w.bufs) {
		err := w.send(int(fd), w.bufs[w.n], w.offs[w.n])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN || err == unix.ENOBUFS:
			return
		case err != nil:
			w.err = os.NewSyscallError(w.op, err)
			return
		}
		w.n++
	}
}

// Addr names a device or socket in a net.OpError.
type Addr struct{ Net, Name string }

func (a Addr) Network() string { return a.Net }
func (a Addr) String() string  { return a.Name }

// OpError wraps err for a port: as net.ErrClosed when the port was closed
// (the poller reports a closed descriptor with an internal error value).
func OpError(op string, a Addr, closed bool, err error) error {
	if closed || errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: a.Net, Source: a, Err: err}
}
