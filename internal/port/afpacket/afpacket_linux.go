// Package afpacket attaches a switch port to a network interface through an
// AF_PACKET socket: the uplink of an external switch on a physical NIC (or
// a veth standing in for one), or the host side of a TAP that QEMU or
// libvirt opened. It reads and writes batches with recvmmsg/sendmmsg, one
// system call per batch and one copy per frame, and puts back the 802.1Q
// tags the kernel strips on receive. Frames carry virtio-net headers both
// ways (PACKET_VNET_HDR): partial checksums and TSO/USO super-frames pass
// through whole, for the switch to hand on or finish.
package afpacket

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/fdio"
)

// Config says which interface to bind.
type Config struct {
	Interface string // the interface's name
	Namespace string // nsrun.Path spec of its namespace; "" is the caller's
	BatchSize int    // frames per Read and per sendmmsg; 64 if 0
	// RecvBuffer is how many bytes of frames the kernel may queue for the
	// port while the switch is busy (SO_RCVBUFFORCE; memory is taken only
	// while frames wait). 8 MiB if 0.
	RecvBuffer int
}

// Stats count what the port received.
type Stats struct {
	Truncated   uint64 // longer than a read buffer
	Drops       uint64 // frames the kernel dropped because the socket's queue was full (PACKET_STATISTICS)
	FramesIn    uint64
	SuperFrames uint64 // TSO/USO super-frames among them
	PartialCsum uint64 // frames with a partial checksum (super-frames included)
}

// Port is an AF_PACKET socket bound to one interface. It implements l2.Port.
type Port struct {
	fd     *fdio.FD
	name   string
	batch  int
	closed atomic.Bool

	rx   msgs // Read's, used by one reader at a time
	rmax int  // frames the next recvmmsg may take
	rn   int  // frames received by the last recvmmsg
	re   error
	rf   func(uintptr) bool
	rnow func(uintptr)

	wmu sync.Mutex // Write's state below; Write is safe for concurrent use
	tx  msgs
	wn  int
	we  error
	wf  func(uintptr)
	big error // what Write returns for a frame longer than the device takes (made once: no allocation per frame)

	truncated, framesIn, superFrames, partialCsum atomic.Uint64
	drops                                         atomic.Uint64 // summed: the kernel resets its count on every query
}

// mmsghdr is struct mmsghdr (linux/socket.h), which x/sys/unix lacks.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// auxLen is the room for one PACKET_AUXDATA control message.
var auxLen = unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{})))

// msgs are the preallocated headers of one batched system call.
type msgs struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	ctrl []byte // auxLen bytes per message (receive only)
	vnet []byte // VnetHdrLen bytes per message (receive only): headers land here first
}

func newMsgs(n int, rx bool) msgs {
	m := msgs{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, 2*n)}
	if rx {
		m.ctrl = make([]byte, n*auxLen)
		m.vnet = make([]byte, n*offload.VnetHdrLen)
	}
	return m
}

// Open binds an AF_PACKET socket to the interface in promiscuous mode.
func Open(c Config) (*Port, error) {
	if c.BatchSize <= 0 {
		c.BatchSize = 64
	}
	if c.RecvBuffer <= 0 {
		c.RecvBuffer = 8 << 20
	}
	p := &Port{name: c.Interface, batch: c.BatchSize, rx: newMsgs(c.BatchSize, true), tx: newMsgs(c.BatchSize, false)}
	var fd int
	err := nsrun.In(nsrun.Path(c.Namespace), func() (err error) {
		fd, err = open(c.Interface, c.RecvBuffer)
		return err
	})
	if err != nil {
		return nil, fdio.OpError("open", fdio.Addr{Net: "packet", Name: c.Interface}, false, err)
	}
	if p.fd, err = fdio.NewFD(fd, "packet:"+c.Interface); err != nil {
		return nil, err
	}
	p.rf, p.wf = p.recv, p.send
	p.big = fmt.Errorf("%w: %w", frame.ErrTooBig, p.opError("write", os.NewSyscallError("sendmmsg", unix.EMSGSIZE)))
	p.rnow = func(fd uintptr) { p.recv(fd) }
	return p, nil
}

// open makes the socket in the current namespace: virtio-net headers, VLAN
// tags as auxiliary data, our own transmissions ignored, bound to the
// interface, promiscuous.
func open(ifname string, rcvbuf int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	// The index by ioctl: net.InterfaceByName lists every interface, which
	// made attaching the thousandth port slow.
	ifr, err := unix.NewIfreq(ifname)
	if err == nil {
		err = unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("interface %q: %w", ifname, os.NewSyscallError("ioctl SIOCGIFINDEX", err))
	}
	index := int(ifr.Uint32())
	mreq := unix.PacketMreq{Ifindex: int32(index), Type: unix.PACKET_MR_PROMISC}
	steps := []struct {
		name string
		do   func() error
	}{
		{"setsockopt PACKET_VNET_HDR", func() error { return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1) }},
		{"setsockopt PACKET_AUXDATA", func() error { return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1) }},
		{"setsockopt PACKET_IGNORE_OUTGOING", func() error {
			return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		}},
		{"setsockopt SO_RCVBUFFORCE", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) }},
		{"bind", func() error {
			return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index})
		}},
		{"setsockopt PACKET_ADD_MEMBERSHIP", func() error {
			return unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError(s.name, err)
		}
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Name returns the interface's name.
func (p *Port) Name() string { return p.name }

// BatchSize implements l2.Port.
func (p *Port) BatchSize() int { return p.batch }

// Offloads implements l2.Port: virtio-net headers, partial checksums and
// super-frames both ways.
func (p *Port) Offloads() offload.Features { return offload.All }

// Stats returns the receive counters.
func (p *Port) Stats() Stats {
	if !p.closed.Load() {
		p.fd.Control(func(fd uintptr) {
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				p.drops.Add(uint64(st.Drops))
			}
		})
	}
	return Stats{Truncated: p.truncated.Load(), FramesIn: p.framesIn.Load(), SuperFrames: p.superFrames.Load(),
		PartialCsum: p.partialCsum.Load(), Drops: p.drops.Load()}
}

// BackendCounters implements l2.CountingPort: Stats by name, the kernel's
// drops as "ring-drops".
func (p *Port) BackendCounters() map[string]uint64 {
	st := p.Stats()
	return map[string]uint64{"truncated": st.Truncated, "ring-drops": st.Drops, "frames-in": st.FramesIn,
		"super-frames": st.SuperFrames, "partial-csum": st.PartialCsum}
}

// Read implements l2.Port: one recvmmsg for as many frames as are queued,
// up to the batch; each frame's tag is put back (and its virtio-net
// header's offsets shifted to match).
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return p.read(bufs, sizes, offset, true)
}

// ReadNow implements l2.PollPort: Read without waiting.
func (p *Port) ReadNow(bufs [][]byte, sizes []int, offset int) (int, error) {
	return p.read(bufs, sizes, offset, false)
}

// PollFD implements l2.PollPort: the socket, for a forwarding thread to wait on.
func (p *Port) PollFD() int { return p.fd.PollFD() }

func (p *Port) read(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	if offset < offload.VnetHdrLen {
		return 0, p.opError("read", os.NewSyscallError("read (no headroom for the header)", unix.EINVAL))
	}
	n := min(len(bufs), p.batch)
	m := &p.rx
	for i := 0; i < n; i++ {
		// The header goes to its own small buffer: a tag put back moves
		// the frame's start, and the header is written in front of it then.
		m.iovs[2*i] = iovec(m.vnet[i*offload.VnetHdrLen : (i+1)*offload.VnetHdrLen])
		m.iovs[2*i+1] = iovec(bufs[i][offset:])
		h := &m.hdrs[i].hdr
		h.Iov, h.Control = &m.iovs[2*i], &m.ctrl[i*auxLen]
		h.SetIovlen(2)
		h.SetControllen(auxLen)
		h.Flags = 0
	}
	p.rmax, p.rn, p.re = n, 0, nil
	var err error
	if wait {
		err = p.fd.Wait(p.rf)
	} else {
		err = p.fd.Control(p.rnow)
	}
	if err != nil {
		return 0, p.opError("read", err)
	}
	if p.re != nil {
		return 0, p.opError("read", p.re)
	}
	return p.finish(bufs, sizes, offset, p.rn), nil
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return v
}

// recv receives up to rmax frames with one recvmmsg; false if none is queued.
func (p *Port) recv(fd uintptr) bool {
	for {
		r, e := fdio.Mmsg(unix.SYS_RECVMMSG, fd, unsafe.Pointer(&p.rx.hdrs[0]), p.rmax)
		switch e {
		case nil:
			p.rn = r
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		p.re = os.NewSyscallError("recvmmsg", e)
		return true
	}
}

// finish turns the k messages received into frames 0..n-1 of the batch:
// tags put back, headers placed, truncated frames dropped.
func (p *Port) finish(bufs [][]byte, sizes []int, offset, k int) int {
	n := 0
	for i := 0; i < k; i++ {
		p.framesIn.Add(1)
		mh := &p.rx.hdrs[i]
		size := int(mh.len) - offload.VnetHdrLen
		if mh.hdr.Flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || size < frame.HeaderLen {
			p.truncated.Add(1)
			continue
		}
		if n != i { // an earlier frame was dropped: close the gap (rare)
			copy(bufs[n][offset:], bufs[i][offset:offset+size])
		}
		b := bufs[n]
		vh, _ := offload.DecodeVnetHdr(p.rx.vnet[i*offload.VnetHdrLen:])
		if tci, tpid, ok := p.tag(i, int(mh.hdr.Controllen)); ok {
			if offset+size+frame.TagLen > len(b) {
				p.truncated.Add(1)
				continue
			}
			// Open a gap for the tag after the addresses: the frame keeps its start.
			copy(b[offset+12+frame.TagLen:], b[offset+12:offset+size])
			binary.BigEndian.PutUint16(b[offset+12:], tpid)
			binary.BigEndian.PutUint16(b[offset+14:], uint16(tci))
			size += frame.TagLen
			vh = vh.Shift(frame.TagLen)
		}
		if vh.IsGSO() {
			p.superFrames.Add(1)
		}
		if vh.Flags&offload.FlagNeedsCsum != 0 {
			p.partialCsum.Add(1)
		}
		vh.Encode(b[offset-offload.VnetHdrLen : offset])
		sizes[n] = size
		n++
	}
	return n
}

// tag returns the 802.1Q tag the kernel took off message i, if any, from
// its PACKET_AUXDATA control message.
func (p *Port) tag(i, ctrlLen int) (frame.TCI, uint16, bool) {
	c := p.rx.ctrl[i*auxLen : i*auxLen+min(ctrlLen, auxLen)]
	hl := unix.CmsgLen(0)
	if len(c) < hl+int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
		return 0, 0, false
	}
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	if cm.Level != unix.SOL_PACKET || cm.Type != unix.PACKET_AUXDATA {
		return 0, 0, false
	}
	aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&c[hl]))
	if aux.Status&unix.TP_STATUS_VLAN_VALID == 0 && aux.Vlan_tci == 0 {
		return 0, 0, false
	}
	tpid := uint16(frame.TPID8021Q)
	if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && aux.Vlan_tpid != 0 {
		tpid = aux.Vlan_tpid
	}
	return frame.TCI(aux.Vlan_tci), tpid, true
}

// Write implements l2.Port: sendmmsg sends the batch in one system call,
// each frame behind the virtio-net header in its headroom (a super-frame
// stays one), tags as they are in the frame. A full queue drops the rest.
func (p *Port) Write(bufs [][]byte, offsets []int) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	sent := 0
	for sent < len(bufs) {
		n := min(len(bufs)-sent, p.batch)
		for i := 0; i < n; i++ {
			b, off := bufs[sent+i], offsets[sent+i]
			if off < offload.VnetHdrLen {
				return sent, p.opError("write", unix.EINVAL) // the switch guarantees l2.WriteHeadroom
			}
			p.tx.iovs[i] = iovec(b[off-offload.VnetHdrLen:])
			h := &p.tx.hdrs[i].hdr
			h.Iov = &p.tx.iovs[i]
			h.SetIovlen(1)
		}
		p.wn, p.we = n, nil
		if err := p.fd.Control(p.wf); err != nil {
			return sent, p.opError("write", err)
		}
		sent += p.wn
		switch {
		case p.we == p.big:
			return sent, p.big // the switch counts it and writes the rest
		case p.we != nil:
			return sent, p.opError("write", p.we)
		case p.wn < n:
			return sent, nil // queue full: the rest is dropped
		}
	}
	return sent, nil
}

// send sends the staged batch with sendmmsg, never waiting: p.wn frames
// went. sendmmsg stops at a frame it cannot send and reports only what it
// sent; it is asked again from that frame to learn why (the queue is full,
// or the frame is longer than the device takes: p.we is p.big).
func (p *Port) send(fd uintptr) {
	total := p.wn
	p.wn = 0
	for p.wn < total {
		r, e := fdio.Mmsg(unix.SYS_SENDMMSG, fd, unsafe.Pointer(&p.tx.hdrs[p.wn]), total-p.wn)
		switch e {
		case nil:
			p.wn += r
			if r == 0 {
				return
			}
		case unix.EINTR:
		case unix.EAGAIN, unix.ENOBUFS:
			return
		case unix.EMSGSIZE:
			p.we = p.big
			return
		default:
			p.we = os.NewSyscallError("sendmmsg", e)
			return
		}
	}
}

func (p *Port) opError(op string, err error) error {
	return fdio.OpError(op, fdio.Addr{Net: "packet", Name: p.name}, p.closed.Load(), err)
}

// Close implements l2.Port: it closes the socket, which unblocks a Read.
func (p *Port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.fd.Close()
}
