package qemu

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dgram is a port for "-netdev dgram,local.type=unix,local.path=QEMU,
// remote.type=unix,remote.path=PATH": one frame per datagram. Its socket is
// bound to PATH and sends to QEMU's socket: the configured one, or the one
// the last datagram came from after the previous peer went away.
type Dgram struct {
	cfg    Config
	conn   *net.UnixConn
	rc     syscall.RawConn
	closed atomic.Bool
	st     stats
	peer   atomic.Pointer[unix.SockaddrUnix] // QEMU's socket; nil until known

	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerr   error
	readFn func(uintptr) bool

	wmu     sync.Mutex
	wbufs   [][]byte
	woffs   []int
	wn      int
	werr    error
	writeFn func(uintptr) bool
}

// ListenDgram binds cfg.Path (removing a stale socket file) and, when
// cfg.Peer is set, connects to QEMU's socket there.
func ListenDgram(cfg Config) (*Dgram, error) {
	cfg.defaults()
	if err := removeStale(cfg.Path); err != nil {
		return nil, err
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: cfg.Path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	d := &Dgram{cfg: cfg, conn: c}
	if d.rc, err = c.SyscallConn(); err != nil {
		c.Close()
		return nil, err
	}
	d.readFn, d.writeFn = d.readSome, d.writeSome
	if cfg.Peer != "" {
		d.peer.Store(&unix.SockaddrUnix{Name: cfg.Peer})
	}
	return d, nil
}

// Addr returns the socket path.
func (d *Dgram) Addr() string { return d.cfg.Path }

// Stats returns the peer counters.
func (d *Dgram) Stats() Stats { return d.st.get() }

// BatchSize implements l2.Port.
func (d *Dgram) BatchSize() int { return d.cfg.BatchSize }

// Read implements l2.Port: one datagram is one frame; a datagram longer
// than the maximum frame is dropped and counted.
func (d *Dgram) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.rbufs, d.rsizes, d.roff, d.rn, d.rerr = bufs, sizes, offset, 0, nil
	err := d.rc.Read(d.readFn)
	n, rerr := d.rn, d.rerr
	d.rbufs, d.rsizes = nil, nil
	if err == nil {
		err = rerr
	}
	if err != nil {
		if d.closed.Load() {
			err = net.ErrClosed
		}
		return n, &net.OpError{Op: "read", Net: "unixgram", Addr: d.conn.LocalAddr(), Err: err}
	}
	return n, nil
}

func (d *Dgram) readSome(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		b := d.rbufs[d.rn][d.roff:]
		var n int
		var err error
		if d.peer.Load() != nil {
			n, err = unix.Read(int(fd), b)
		} else {
			// Learn QEMU's address from its datagram (allocates, once per peer).
			var from unix.Sockaddr
			n, from, err = unix.Recvfrom(int(fd), b, 0)
			if sa, ok := from.(*unix.SockaddrUnix); err == nil && ok && sa.Name != "" {
				d.peer.Store(&unix.SockaddrUnix{Name: sa.Name})
				d.st.connections.Add(1)
			}
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return d.rn > 0
		case err != nil:
			d.rerr = os.NewSyscallError("read", err)
			return true
		case n > d.cfg.maxFrame() || n >= len(b):
			d.st.oversize.Add(1)
			continue
		}
		d.rsizes[d.rn] = n
		d.rn++
	}
	return true
}

// Write implements l2.Port: one datagram per frame, never waiting.
func (d *Dgram) Write(bufs [][]byte, offsets []int) (int, error) {
	if d.peer.Load() == nil {
		return 0, ErrNotConnected
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.wbufs, d.woffs, d.wn, d.werr = bufs, offsets, 0, nil
	err := d.rc.Write(d.writeFn)
	n, werr := d.wn, d.werr
	d.wbufs, d.woffs = nil, nil
	if err == nil {
		err = werr
	}
	if err != nil {
		return n, &net.OpError{Op: "write", Net: "unixgram", Addr: d.conn.LocalAddr(), Err: err}
	}
	return n, nil
}

func (d *Dgram) writeSome(fd uintptr) bool {
	peer := d.peer.Load() // its sockaddr buffer is only written under wmu
	if peer == nil {
		d.werr = ErrNotConnected
		return true
	}
	for d.wn < len(d.wbufs) {
		err := unix.Sendto(int(fd), d.wbufs[d.wn][d.woffs[d.wn]:], 0, peer)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN || err == unix.ENOBUFS:
			return true
		case errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT):
			// Nobody is bound there now. A configured peer may come back
			// at the same path; a learnt one is forgotten, to be learnt
			// again from the next datagram.
			if d.cfg.Peer == "" {
				d.peer.CompareAndSwap(peer, nil)
			}
			d.werr = ErrNotConnected
			return true
		case err != nil:
			d.werr = os.NewSyscallError("write", err)
			return true
		}
		d.wn++
	}
	return true
}

// Close implements l2.Port and removes the socket file.
func (d *Dgram) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.conn.Close()
	os.Remove(d.cfg.Path)
	return err
}
