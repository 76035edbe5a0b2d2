// Package afpacket attaches a switch port to a network interface through an
// AF_PACKET socket: the uplink of an external switch on a physical NIC (or
// a veth standing in for one), or the host side of a TAP that QEMU or
// libvirt opened. It reads through a TPACKET_V2 ring shared with the
// kernel and puts back the 802.1Q tags the kernel strips on receive. Frames
// carry virtio-net headers both ways (PACKET_VNET_HDR): partial checksums
// and TSO/USO super-frames pass through whole, for the switch to hand on
// or finish.
package afpacket

import (
	"encoding/binary"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/fdio"
)

// Config says which interface to bind.
type Config struct {
	Interface  string // the interface's name
	Namespace  string // nsrun.Path spec of its namespace; "" is the caller's
	BatchSize  int    // frames per Read; 64 if 0
	RingFrames int    // receive ring slots of 68 KiB each (room for a 64 KiB super-frame); 240 if 0
}

const (
	frameSize     = 69632 // a 64 KiB super-frame plus the ring's headers, 16-byte aligned
	framesPerBlk  = 15
	blockSize     = 1 << 20 // framesPerBlk frames fit; blocks are whole pages
	tpStatusMask  = unix.TP_STATUS_USER
	tpacket2Bytes = int(unsafe.Sizeof(unix.Tpacket2Hdr{}))
)

// Stats count what the port received.
type Stats struct {
	Truncated   uint64 // longer than a ring slot or a read buffer
	RingDrops   uint64 // frames the kernel dropped because the ring was full (PACKET_STATISTICS)
	FramesIn    uint64
	SuperFrames uint64 // TSO/USO super-frames among them
	PartialCsum uint64 // frames with a partial checksum (super-frames included)
}

// Port is an AF_PACKET socket bound to one interface. It implements l2.Port.
type Port struct {
	f      *os.File
	rc     syscall.RawConn
	name   string
	batch  int
	ring   []byte
	slots  int
	closed atomic.Bool

	rmu  sync.Mutex // held by Read; Close takes it before unmapping the ring
	cur  int        // next ring slot to read
	bufs [][]byte
	sz   []int
	off  int
	n    int
	wait func(uintptr) bool

	w *fdio.Writer

	truncated, framesIn, superFrames, partialCsum atomic.Uint64
	ringDrops                                     atomic.Uint64 // summed: the kernel resets its count on every query
}

// Open binds an AF_PACKET socket to the interface in promiscuous mode.
func Open(c Config) (*Port, error) {
	if c.BatchSize <= 0 {
		c.BatchSize = 64
	}
	if c.RingFrames <= 0 {
		c.RingFrames = 240
	}
	blocks := (c.RingFrames + framesPerBlk - 1) / framesPerBlk
	p := &Port{name: c.Interface, batch: c.BatchSize, slots: blocks * framesPerBlk}
	var fd int
	err := nsrun.In(nsrun.Path(c.Namespace), func() (err error) {
		fd, err = open(c.Interface, blocks)
		return err
	})
	if err != nil {
		return nil, fdio.OpError("open", fdio.Addr{Net: "packet", Name: c.Interface}, false, err)
	}
	ring, err := unix.Mmap(fd, 0, blocks*blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return nil, fdio.OpError("open", fdio.Addr{Net: "packet", Name: c.Interface}, false, os.NewSyscallError("mmap", err))
	}
	p.ring = ring
	p.f = os.NewFile(uintptr(fd), "packet:"+c.Interface)
	if p.rc, err = p.f.SyscallConn(); err != nil {
		p.f.Close()
		unix.Munmap(ring)
		return nil, err
	}
	p.wait = p.ready
	p.w = fdio.NewWriter(p.rc, send, "write")
	return p, nil
}

// open makes the socket in the current namespace: TPACKET_V2 ring with
// virtio-net headers, our own transmissions ignored, bound to the
// interface, promiscuous.
func open(ifname string, blocks int) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	step := func(name string, err error) error {
		if err != nil {
			return os.NewSyscallError(name, err)
		}
		return nil
	}
	req := unix.TpacketReq{Block_size: blockSize, Block_nr: uint32(blocks), Frame_size: frameSize, Frame_nr: uint32(blocks * framesPerBlk)}
	all := htons(unix.ETH_P_ALL)
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	for _, s := range []func() error{
		func() error {
			return step("setsockopt PACKET_VERSION", unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2))
		},
		func() error {
			return step("setsockopt PACKET_VNET_HDR", unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1))
		},
		func() error {
			return step("setsockopt PACKET_IGNORE_OUTGOING", unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1))
		},
		func() error {
			return step("setsockopt PACKET_RX_RING", unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req))
		},
		func() error {
			return step("bind", unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index}))
		},
		func() error {
			return step("setsockopt PACKET_ADD_MEMBERSHIP", unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq))
		},
	} {
		if err := s(); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// slot returns ring slot i.
func (p *Port) slot(i int) []byte {
	b := (i / framesPerBlk) * blockSize
	o := b + (i%framesPerBlk)*frameSize
	return p.ring[o : o+frameSize : o+frameSize]
}

func status(s []byte) *uint32 { return (*uint32)(unsafe.Pointer(&s[0])) }

func (p *Port) release(i int) {
	atomic.StoreUint32(status(p.slot(i)), unix.TP_STATUS_KERNEL)
}

// ready is the poller callback: is the next slot ours yet?
func (p *Port) ready(uintptr) bool {
	return atomic.LoadUint32(status(p.slot(p.cur)))&tpStatusMask != 0
}

// Name returns the interface's name.
func (p *Port) Name() string { return p.name }

// Offloads implements l2.Port: virtio-net headers, partial checksums and
// super-frames both ways.
func (p *Port) Offloads() offload.Features { return offload.All }

// BatchSize implements l2.Port.
func (p *Port) BatchSize() int { return p.batch }

// Stats returns the receive counters.
func (p *Port) Stats() Stats {
	if !p.closed.Load() {
		p.rc.Control(func(fd uintptr) {
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				p.ringDrops.Add(uint64(st.Drops))
			}
		})
	}
	return Stats{Truncated: p.truncated.Load(), FramesIn: p.framesIn.Load(), SuperFrames: p.superFrames.Load(),
		PartialCsum: p.partialCsum.Load(), RingDrops: p.ringDrops.Load()}
}

// Read implements l2.Port: it takes frames from the ring until it is empty
// or the batch is full, restoring tags (and shifting the virtio-net
// header's offsets to match).
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.bufs, p.sz, p.off, p.n = bufs, sizes, offset, 0
	defer func() { p.bufs, p.sz = nil, nil }()
	for {
		if p.closed.Load() || p.ring == nil {
			return p.n, p.opError("read", net.ErrClosed)
		}
		p.drain()
		if p.n > 0 {
			return p.n, nil
		}
		if err := p.rc.Read(p.wait); err != nil {
			return 0, p.opError("read", err)
		}
	}
}

// drain fills the batch from the ring.
func (p *Port) drain() {
	for p.n < len(p.bufs) {
		s := p.slot(p.cur)
		st := atomic.LoadUint32(status(s))
		if st&tpStatusMask == 0 {
			return
		}
		p.take(s, st)
		p.advance()
	}
}

// take copies the frame in ring slot s, with its virtio-net header and its
// tag put back, into the batch.
func (p *Port) take(s []byte, st uint32) {
	h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0]))
	mac, snap := int(h.Mac), int(h.Snaplen)
	p.framesIn.Add(1)
	if snap < int(h.Len) || mac < offload.VnetHdrLen || mac+snap > len(s) {
		p.truncated.Add(1)
		return
	}
	vh, _ := offload.DecodeVnetHdr(s[mac-offload.VnetHdrLen : mac])
	pkt := s[mac : mac+snap]
	tagged := st&unix.TP_STATUS_VLAN_VALID != 0 || h.Vlan_tci != 0
	tagLen := 0
	if tagged {
		tagLen = frame.TagLen
	}
	b := p.bufs[p.n]
	if p.off < offload.VnetHdrLen || len(pkt)+tagLen > len(b)-p.off {
		p.truncated.Add(1)
		return
	}
	copy(b[p.off+tagLen:], pkt)
	if tagged {
		tpid := uint16(frame.TPID8021Q)
		if st&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Vlan_tpid != 0 {
			tpid = h.Vlan_tpid
		}
		frame.PushTag(b, p.off+frame.TagLen, frame.TCI(h.Vlan_tci))
		binary.BigEndian.PutUint16(b[p.off+12:], tpid)
		vh = vh.Shift(frame.TagLen)
	}
	if vh.IsGSO() {
		p.superFrames.Add(1)
	}
	if vh.Flags&offload.FlagNeedsCsum != 0 {
		p.partialCsum.Add(1)
	}
	vh.Encode(b[p.off-offload.VnetHdrLen : p.off])
	p.sz[p.n] = len(pkt) + tagLen
	p.n++
}

// advance gives the current slot back to the kernel and moves on.
func (p *Port) advance() {
	p.release(p.cur)
	p.cur = (p.cur + 1) % p.slots
}

// Write implements l2.Port: each frame goes out with the virtio-net header
// in front of it (a super-frame stays one), tags as they are in the frame.
func (p *Port) Write(bufs [][]byte, offsets []int) (int, error) {
	n, err := p.w.Write(bufs, offsets)
	if err != nil {
		return n, p.opError("write", err)
	}
	return n, nil
}

func send(fd int, b []byte, off int) error {
	if off < offload.VnetHdrLen {
		return unix.EINVAL // the switch guarantees l2.WriteHeadroom
	}
	_, err := unix.Write(fd, b[off-offload.VnetHdrLen:])
	return err
}

func (p *Port) opError(op string, err error) error {
	return fdio.OpError(op, fdio.Addr{Net: "packet", Name: p.name}, p.closed.Load(), err)
}

// Close implements l2.Port: it closes the socket, waits for a Read in
// progress to return and unmaps the ring.
func (p *Port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	err := p.f.Close()
	p.rmu.Lock()
	unix.Munmap(p.ring)
	p.ring = nil
	p.rmu.Unlock()
	return err
}
