package qemu

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/fdio"
)

// Dgram is a port for "-netdev dgram,local.type=unix,local.path=QEMU,
// remote.type=unix,remote.path=PATH": one frame per datagram. Its socket is
// bound to PATH and sends to QEMU's socket: the configured one, or the one
// the last datagram came from after the previous peer went away.
type Dgram struct {
	cfg    Config
	conn   *net.UnixConn
	rc     syscall.RawConn
	fd     int // the socket's descriptor (PollFD)
	closed atomic.Bool
	st     stats
	peer   atomic.Pointer[unix.SockaddrUnix] // QEMU's socket; nil until known
	r      *fdio.Reader
	w      *fdio.Writer
}

// ListenDgram binds cfg.Path (removing a stale socket file) and, when
// cfg.Peer is set, sends to QEMU's socket there.
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
	if d.fd, err = sysFD(d.rc); err != nil {
		c.Close()
		return nil, err
	}
	d.r = fdio.NewReader(fdio.RawConn(d.rc), d.recv, cfg.maxFrame(), 0)
	d.w = fdio.NewWriter(fdio.RawConn(d.rc), d.send, "sendto")
	if cfg.Peer != "" {
		d.peer.Store(&unix.SockaddrUnix{Name: cfg.Peer})
	}
	return d, nil
}

// Addr returns the socket path.
func (d *Dgram) Addr() string { return d.cfg.Path }

// Stats returns the peer counters.
func (d *Dgram) Stats() Stats {
	s := d.st.get()
	s.Oversize = d.r.Dropped()
	return s
}

// BackendCounters implements l2.CountingPort: the peer counters by name
// ("connections" counts the peers learnt from their datagrams; a dgram
// port has no bad peers, only oversize datagrams).
func (d *Dgram) BackendCounters() map[string]uint64 {
	st := d.Stats()
	return map[string]uint64{"connections": st.Connections, "oversize": st.Oversize}
}

// Offloads implements l2.Port: QEMU's socket backends carry plain frames.
func (d *Dgram) Offloads() offload.Features { return 0 }

// BatchSize implements l2.Port.
func (d *Dgram) BatchSize() int { return d.cfg.BatchSize }

// Read implements l2.Port: one datagram is one frame; a datagram longer
// than the maximum frame is dropped and counted.
func (d *Dgram) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.r.Read(bufs, sizes, offset)
	if err != nil {
		return n, d.opError("read", err)
	}
	return n, nil
}

// PollFD implements l2.PollPort: the socket, readable while datagrams wait.
func (d *Dgram) PollFD() int { return d.fd }

// ReadNow implements l2.PollPort: Read without waiting.
func (d *Dgram) ReadNow(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.r.ReadNow(bufs, sizes, offset)
	if err != nil {
		return n, d.opError("read", err)
	}
	return n, nil
}

// recv reads a datagram; while QEMU's address is unknown it learns it
// from the datagram (allocating, once per peer).
func (d *Dgram) recv(fd int, b []byte) (int, error) {
	if d.peer.Load() != nil {
		return unix.Read(fd, b)
	}
	n, from, err := unix.Recvfrom(fd, b, 0)
	if sa, ok := from.(*unix.SockaddrUnix); err == nil && ok && sa.Name != "" {
		d.peer.Store(&unix.SockaddrUnix{Name: sa.Name})
		d.st.connections.Add(1)
	}
	return n, err
}

// Write implements l2.Port: one datagram per frame, never waiting.
func (d *Dgram) Write(bufs [][]byte, offsets []int) (int, error) {
	peer := d.peer.Load()
	if peer == nil {
		return 0, ErrNotConnected
	}
	n, err := d.w.Write(bufs, offsets)
	if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
		// Nobody is bound there now. A configured peer may come back at
		// the same path; a learnt one is forgotten, to be learnt again
		// from the next datagram.
		if d.cfg.Peer == "" {
			d.peer.CompareAndSwap(peer, nil)
		}
		return n, ErrNotConnected
	}
	if err != nil {
		return n, d.opError("write", err)
	}
	return n, nil
}

// send is called under the Writer's lock, which also guards the peer's
// sockaddr buffer that Sendto fills.
func (d *Dgram) send(fd int, b []byte, off int) error {
	peer := d.peer.Load()
	if peer == nil {
		return unix.ENOENT
	}
	return unix.Sendto(fd, b[off:], 0, peer)
}

func (d *Dgram) opError(op string, err error) error {
	return fdio.OpError(op, fdio.Addr{Net: "unixgram", Name: d.cfg.Path}, d.closed.Load(), err)
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
