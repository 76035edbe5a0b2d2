// Package qemu attaches a switch port to QEMU's socket network backends:
// a unix-socket listener that "-netdev stream" connects to (frames behind
// a 4-byte big-endian length), or a unix datagram socket for "-netdev
// dgram" (one frame per datagram). A misbehaving peer is disconnected and
// counted; the port then waits for the next one. Nothing allocates per frame.
//
// Both kinds are l2.PollPorts: a switch with a Poller reads them on its
// forwarding threads. A stream port's PollFD is an epoll instance of its
// own that holds the listening socket while no peer is connected and the
// peer's connection while one is: readable exactly when there is
// something to accept or to read, and never busy while a second QEMU waits
// for the first to go.
package qemu

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/sockfile"

	"github.com/vswitch/vswitch/internal/offload"
)

// ErrNotConnected: a stream port has no peer yet; written frames are dropped.
var ErrNotConnected = errors.New("qemu: no peer connected")

// Config describes a QEMU socket port.
type Config struct {
	Path      string // the unix socket vswitchd listens on (stream) or binds (dgram)
	MTU       int    // the guest's MTU; 1500 if 0. Longer frames count as a bad peer.
	BatchSize int    // 64 if 0
	// Peer is, for dgram only, the socket QEMU binds ("local.path"); if
	// empty it is learnt from the first datagram.
	Peer string
}

func (c *Config) defaults() {
	if c.MTU <= 0 {
		c.MTU = 1500
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 64
	}
}

// maxFrame is the longest frame a guest with this MTU sends: the Ethernet
// header and two 802.1Q tags on top.
func (c *Config) maxFrame() int { return c.MTU + 14 + 8 }

// Stats count what the peer did wrong and how often it came.
type Stats struct {
	Connections uint64 // peers accepted
	BadPeers    uint64 // connections closed for a bad length or a frame cut off
	Oversize    uint64 // frames dropped for not fitting the reader's buffer
}

type stats struct{ connections, badPeers, oversize atomic.Uint64 }

func (s *stats) get() Stats {
	return Stats{Connections: s.connections.Load(), BadPeers: s.badPeers.Load(), Oversize: s.oversize.Load()}
}

// Stream is a port for "-netdev stream,addr.type=unix,addr.path=PATH":
// it listens on PATH and serves one connection at a time.
type Stream struct {
	cfg    Config
	ln     *net.UnixListener
	lrc    syscall.RawConn // the listener's
	lfd    int             // the listener's descriptor, for ep
	left   int             // an eventfd, readable while ReadNow left whole frames in dec
	leftOn bool
	leftB  [8]byte // leftOver's counter buffer: a field, so that no call allocates
	closed atomic.Bool
	st     stats

	// Reader side (one goroutine).
	conn   *net.UnixConn
	rc     syscall.RawConn
	dec    *decoder
	rerr   error
	readFn func(uintptr) bool
	nowFn  func(uintptr) // ReadNow's: readSome once, its result in more
	more   bool

	wmu     sync.Mutex // guards the writer side, the connection handover and ep
	ep      int        // PollFD: an epoll instance holding lfd or cfd, and left; -1 once closed
	cfd     int        // the peer's descriptor, while one is connected
	wrc     syscall.RawConn
	wbuf    []byte
	wpos    int
	wends   []int // end offset in wbuf of each frame of the batch
	werr    error
	writeFn func(uintptr) bool
}

// ListenStream removes a stale socket file at cfg.Path and listens there.
func ListenStream(cfg Config) (*Stream, error) {
	cfg.defaults()
	if err := removeStale(cfg.Path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	s := &Stream{cfg: cfg, ln: ln, dec: newDecoder(cfg.maxFrame())}
	if err := s.openEpoll(); err != nil {
		ln.Close()
		return nil, err
	}
	s.wbuf = make([]byte, 0, cfg.BatchSize*(cfg.maxFrame()+lenPrefix)+cfg.maxFrame()+lenPrefix)
	s.wends = make([]int, 0, cfg.BatchSize+1)
	s.readFn, s.writeFn = s.readSome, s.writeSome
	s.nowFn = func(fd uintptr) { s.more = s.readSome(fd) }
	return s, nil
}

// openEpoll makes the port's PollFD, watching the listener.
func (s *Stream) openEpoll() error {
	var err error
	if s.lrc, err = s.ln.SyscallConn(); err != nil {
		return err
	}
	if s.lfd, err = sysFD(s.lrc); err != nil {
		return err
	}
	if s.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if s.left, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(s.ep)
		return os.NewSyscallError("eventfd", err)
	}
	if err = s.watch(s.lfd, true); err == nil {
		err = s.watch(s.left, true)
	}
	if err != nil {
		unix.Close(s.ep)
		unix.Close(s.left)
	}
	return err
}

// leftOver keeps the port's epoll instance readable while whole frames
// wait in the decoder: a batch read from the socket can complete more
// frames than ReadNow's caller had buffers for, and the socket itself is
// then no longer readable.
func (s *Stream) leftOver(on bool) {
	if on == s.leftOn {
		return
	}
	if on {
		s.leftB = [8]byte{7: 1} // host byte order does not matter: any non-zero count
		unix.Write(s.left, s.leftB[:])
	} else {
		unix.Read(s.left, s.leftB[:])
	}
	s.leftOn = on
}

// watch adds fd to the port's epoll instance, or removes it. Callers
// hold wmu (or own the port alone).
func (s *Stream) watch(fd int, on bool) error {
	if s.ep < 0 {
		return net.ErrClosed
	}
	if on {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		return os.NewSyscallError("epoll_ctl", unix.EpollCtl(s.ep, unix.EPOLL_CTL_ADD, fd, &ev))
	}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(s.ep, unix.EPOLL_CTL_DEL, fd, nil))
}

// sysFD returns the descriptor behind rc.
func sysFD(rc syscall.RawConn) (int, error) {
	fd := -1
	err := rc.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

// removeStale deletes a socket file no one listens on any more; a live
// socket (another process's) or a file that is not a socket is refused.
func removeStale(path string) error { return sockfile.RemoveStale(path) }

// Addr returns the socket path.
func (s *Stream) Addr() string { return s.cfg.Path }

// Stats returns the peer counters.
func (s *Stream) Stats() Stats { return s.st.get() }

// BackendCounters implements l2.CountingPort: the peer counters by name.
func (s *Stream) BackendCounters() map[string]uint64 {
	st := s.Stats()
	return map[string]uint64{"connections": st.Connections, "bad-peers": st.BadPeers, "oversize": st.Oversize}
}

// Offloads implements l2.Port: QEMU's socket backends carry plain frames.
func (s *Stream) Offloads() offload.Features { return 0 }

// BatchSize implements l2.Port.
func (s *Stream) BatchSize() int { return s.cfg.BatchSize }

// Read implements l2.Port. It accepts a peer if none is connected, and
// returns the frames that one read(2) of the stream completes.
func (s *Stream) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		if s.conn == nil {
			if err := s.accept(); err != nil {
				return 0, err
			}
		}
		n, err := s.decode(bufs, sizes, offset)
		if err == nil && n == 0 {
			s.rerr = nil
			if err = s.rc.Read(s.readFn); err == nil {
				err = s.rerr
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			if s.closed.Load() {
				return n, s.closedErr()
			}
			s.hangUp(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// PollFD implements l2.PollPort: the port's epoll instance, readable while
// a peer waits to be accepted or the connected one has sent something.
func (s *Stream) PollFD() int { return s.ep }

// ReadNow implements l2.PollPort: Read without waiting. It accepts a
// waiting peer if none is connected and reads what the peer has sent; it
// returns 0 when no whole frame is there (also after hanging up on a bad
// peer or one that went away).
func (s *Stream) ReadNow(bufs [][]byte, sizes []int, offset int) (int, error) {
	if s.closed.Load() {
		return 0, s.closedErr()
	}
	if s.conn == nil {
		if err := s.acceptNow(); err != nil || s.conn == nil {
			return 0, err
		}
	}
	n, err := s.decode(bufs, sizes, offset)
	for err == nil && n < len(bufs) {
		s.rerr, s.more = nil, false
		if err = s.rc.Control(s.nowFn); err != nil || !s.more {
			break // nothing more to read now (or the connection is closed)
		}
		if err = s.rerr; err != nil {
			break
		}
		var m int
		m, err = s.decode(bufs[n:], sizes[n:], offset)
		n += m
	}
	if err != nil {
		if s.closed.Load() {
			return n, s.closedErr()
		}
		s.hangUp(err)
	}
	s.leftOver(s.conn != nil && s.dec.ready())
	return n, nil
}

// hangUp ends the connection after a read failed with err, counting a bad
// peer unless it hung up cleanly between frames.
func (s *Stream) hangUp(err error) {
	if !errors.Is(err, io.EOF) || s.dec.pending() > 0 {
		s.st.badPeers.Add(1) // bad length, a frame cut off, or a broken connection
	}
	s.drop()
}

func (s *Stream) closedErr() error {
	return &net.OpError{Op: "read", Net: "unix", Addr: s.ln.Addr(), Err: net.ErrClosed}
}

// decode copies the buffered whole frames into bufs.
func (s *Stream) decode(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		f, err := s.dec.next()
		if err != nil || f == nil {
			return n, err
		}
		if len(f) > len(bufs[n])-offset {
			s.st.oversize.Add(1)
			continue
		}
		sizes[n] = copy(bufs[n][offset:], f)
		n++
	}
	return n, nil
}

func (s *Stream) readSome(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), s.dec.space())
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			s.rerr = os.NewSyscallError("read", err)
		case n == 0:
			s.rerr = io.EOF
		default:
			s.dec.added(n)
		}
		return true
	}
}

func (s *Stream) accept() error {
	c, err := s.ln.AcceptUnix()
	if err != nil {
		return s.acceptErr(err)
	}
	return s.attach(c)
}

func (s *Stream) acceptErr(err error) error {
	if s.closed.Load() {
		err = net.ErrClosed
	}
	return &net.OpError{Op: "accept", Net: "unix", Addr: s.ln.Addr(), Err: err}
}

// acceptNow accepts a waiting peer without waiting; s.conn stays nil if
// none is there. Other errors (EMFILE, say) end the port's reading, as
// they do Read's: the listener stays readable, so retrying them here would
// keep a forwarding thread spinning.
func (s *Stream) acceptNow() error {
	nfd, err := -1, error(nil)
	if cerr := s.lrc.Control(func(fd uintptr) {
		nfd, _, err = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	}); cerr != nil {
		return s.acceptErr(cerr)
	}
	switch err {
	case nil:
	case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
		return nil // none waiting, or it gave up
	default:
		return s.acceptErr(os.NewSyscallError("accept4", err))
	}
	f := os.NewFile(uintptr(nfd), "qemu-peer")
	c, err := net.FileConn(f) // a duplicate of nfd, in the runtime's poller for Write
	f.Close()
	if err != nil {
		return s.acceptErr(err)
	}
	return s.attach(c.(*net.UnixConn))
}

// attach makes c the peer: the port's epoll instance watches it instead
// of the listener (a second QEMU waits in the backlog until c goes).
func (s *Stream) attach(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return err
	}
	fd, err := sysFD(rc)
	if err != nil {
		c.Close()
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.watch(fd, true); err != nil {
		c.Close()
		return s.acceptErr(err)
	}
	s.watch(s.lfd, false)
	s.st.connections.Add(1)
	s.dec.reset()
	s.conn, s.rc, s.wrc, s.cfd = c, rc, rc, fd
	s.wbuf, s.wpos = s.wbuf[:0], 0
	return nil
}

// drop closes the current peer; the next Read waits for another, and the
// port's epoll instance watches the listener again.
func (s *Stream) drop() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.watch(s.cfd, false)
	s.conn.Close()
	s.conn, s.rc, s.wrc = nil, nil, nil
	s.watch(s.lfd, true) // not after Close: then s.ep < 0
}

// Write implements l2.Port: the batch goes out in one non-blocking
// write(2). A frame the socket took only part of is finished first on the
// next Write, so the stream stays framed; frames it took nothing of are
// dropped.
func (s *Stream) Write(bufs [][]byte, offsets []int) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.wrc == nil {
		return 0, ErrNotConnected
	}
	carried := len(s.wbuf) // the rest of a frame cut off last time
	s.wends = s.wends[:0]
	if carried > 0 {
		s.wends = append(s.wends, carried)
	}
	for i, b := range bufs {
		s.wbuf = appendFrame(s.wbuf, b[offsets[i]:])
		s.wends = append(s.wends, len(s.wbuf))
	}
	s.wpos, s.werr = 0, nil
	if err := s.wrc.Write(s.writeFn); err != nil && s.werr == nil {
		s.werr = err
	}
	// Count the frames of this batch that went out whole or in part, and
	// keep the unsent rest of a frame cut in the middle.
	sent, keepFrom, keepTo := 0, 0, 0
	for k, end := range s.wends {
		start := 0
		if k > 0 {
			start = s.wends[k-1]
		}
		if s.wpos > start && k >= len(s.wends)-len(bufs) {
			sent++
		}
		if s.wpos > start && s.wpos < end {
			keepFrom, keepTo = s.wpos, end
		}
	}
	s.wbuf = s.wbuf[:copy(s.wbuf, s.wbuf[keepFrom:keepTo])]
	if s.werr != nil {
		return sent, &net.OpError{Op: "write", Net: "unix", Addr: s.ln.Addr(), Err: s.werr}
	}
	return sent, nil
}

func (s *Stream) writeSome(fd uintptr) bool {
	for s.wpos < len(s.wbuf) {
		n, err := unix.Write(int(fd), s.wbuf[s.wpos:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil:
			s.werr = os.NewSyscallError("write", err)
			return true
		}
		s.wpos += n
	}
	return true
}

// Close implements l2.Port: it stops listening, drops the peer and removes
// the socket file.
func (s *Stream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.wmu.Lock()
	c := s.conn
	s.wrc = nil
	unix.Close(s.ep) // a Poller stopped watching it before Close (l2.PollPort)
	unix.Close(s.left)
	s.ep = -1 // before the listener closes: a drop racing with Close must not re-add its number
	s.wmu.Unlock()
	err := s.ln.Close() // also removes the socket file
	if c != nil {
		c.Close() // unblocks a Read waiting on the peer
	}
	return err
}
