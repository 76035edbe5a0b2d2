// Package qemu attaches a switch port to QEMU's socket network backends:
// a unix-socket listener that "-netdev stream" connects to (frames behind
// a 4-byte big-endian length), or a unix datagram socket for "-netdev
// dgram" (one frame per datagram). A misbehaving peer is disconnected and
// counted; the port then waits for the next one. Nothing allocates per frame.
package qemu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

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
	closed atomic.Bool
	st     stats

	// Reader side (one goroutine).
	conn   *net.UnixConn
	rc     syscall.RawConn
	dec    *decoder
	rerr   error
	readFn func(uintptr) bool

	wmu     sync.Mutex // guards the writer side and the connection handover
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
	s.wbuf = make([]byte, 0, cfg.BatchSize*(cfg.maxFrame()+lenPrefix)+cfg.maxFrame()+lenPrefix)
	s.wends = make([]int, 0, cfg.BatchSize+1)
	s.readFn, s.writeFn = s.readSome, s.writeSome
	return s, nil
}

// removeStale deletes a socket file no one listens on any more.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("qemu: %s exists and is not a socket", path)
	}
	return os.Remove(path)
}

// Addr returns the socket path.
func (s *Stream) Addr() string { return s.cfg.Path }

// Stats returns the peer counters.
func (s *Stream) Stats() Stats { return s.st.get() }

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
				return n, &net.OpError{Op: "read", Net: "unix", Addr: s.ln.Addr(), Err: net.ErrClosed}
			}
			if !errors.Is(err, io.EOF) || s.dec.pending() > 0 {
				s.st.badPeers.Add(1) // bad length, a frame cut off, or a broken connection
			}
			s.drop()
		}
		if n > 0 {
			return n, nil
		}
	}
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
		if s.closed.Load() {
			err = net.ErrClosed
		}
		return &net.OpError{Op: "accept", Net: "unix", Addr: s.ln.Addr(), Err: err}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return err
	}
	s.st.connections.Add(1)
	s.dec.reset()
	s.wmu.Lock()
	s.conn, s.rc, s.wrc = c, rc, rc
	s.wbuf, s.wpos = s.wbuf[:0], 0
	s.wmu.Unlock()
	return nil
}

// drop closes the current peer; the next Read waits for another.
func (s *Stream) drop() {
	s.wmu.Lock()
	c := s.conn
	s.conn, s.rc, s.wrc = nil, nil, nil
	s.wmu.Unlock()
	c.Close()
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
	err := s.ln.Close() // also removes the socket file
	s.wmu.Lock()
	c := s.conn
	s.wrc = nil
	s.wmu.Unlock()
	if c != nil {
		c.Close() // unblocks a Read waiting on the peer
	}
	return err
}
