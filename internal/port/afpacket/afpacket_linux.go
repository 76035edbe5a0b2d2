// Package afpacket attaches a switch port to a network interface through an
// AF_PACKET socket: the uplink of an external switch on a physical NIC (or
// a veth standing in for one), or the host side of a TAP that QEMU or
// libvirt opened. It reads through a TPACKET_V2 ring shared with the
// kernel, puts back the 802.1Q tags the kernel strips on receive, and
// finishes what the sender offloaded (partial checksums, TSO/USO
// super-frames) so that frames leave for any port complete and wire-sized.
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

// Stats count per-frame problems on receive.
type Stats struct {
	Truncated   uint64 // longer than a ring slot or a read buffer
	BadOffload  uint64 // partial checksum or super-frame the port could not finish
	Segmented   uint64 // super-frames cut into wire-sized segments
	RingDrops   uint64 // frames the kernel dropped because the ring was full (PACKET_STATISTICS)
	CsumDone    uint64 // partial checksums completed
	FramesIn    uint64
	SuperFrames uint64
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
	seg  pending    // a super-frame being cut, across Reads
	bufs [][]byte
	sz   []int
	off  int
	n    int
	wait func(uintptr) bool

	w *fdio.Writer

	truncated, badOffload, segmented, csumDone, framesIn, superFrames atomic.Uint64
	ringDrops                                                         atomic.Uint64 // summed: the kernel resets its count on every query
}

// pending is a super-frame in ring slot slot of which segments next..total-1 are still to go.
type pending struct {
	active      bool
	slot        int
	next, total int
	hdr         offload.VnetHdr
	pkt         []byte
	tagged      bool
	tci         frame.TCI
	tpid        uint16
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
	return p.seg.active || atomic.LoadUint32(status(p.slot(p.cur)))&tpStatusMask != 0
}

// Name returns the interface's name.
func (p *Port) Name() string { return p.name }

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
	return Stats{Truncated: p.truncated.Load(), BadOffload: p.badOffload.Load(), Segmented: p.segmented.Load(),
		CsumDone: p.csumDone.Load(), FramesIn: p.framesIn.Load(), SuperFrames: p.superFrames.Load(), RingDrops: p.ringDrops.Load()}
}

// Read implements l2.Port: it takes frames from the ring until it is empty
// or the batch is full, restoring tags and finishing offloads.
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.bufs, p.sz, p.off, p.n = bufs, sizes, offset, 0
	defer func() { p.bufs, p.sz = nil, nil }()
	for {
		if p.closed.Load() {
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

// drain fills the batch from the pending super-frame and the ring.
func (p *Port) drain() {
	for p.n < len(p.bufs) {
		if p.seg.active {
			p.cutSegment()
			continue
		}
		s := p.slot(p.cur)
		st := atomic.LoadUint32(status(s))
		if st&tpStatusMask == 0 {
			return
		}
		p.take(s, st)
	}
}

// take handles the frame in the current slot.
func (p *Port) take(s []byte, st uint32) {
	h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0]))
	mac, snap := int(h.Mac), int(h.Snaplen)
	p.framesIn.Add(1)
	if snap < int(h.Len) || mac < offload.VnetHdrLen || mac+snap > len(s) {
		p.truncated.Add(1)
		p.advance()
		return
	}
	vh, _ := offload.DecodeVnetHdr(s[mac-offload.VnetHdrLen : mac])
	pkt := s[mac : mac+snap]
	tagged := st&unix.TP_STATUS_VLAN_VALID != 0 || h.Vlan_tci != 0
	tpid := uint16(frame.TPID8021Q)
	if st&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Vlan_tpid != 0 {
		tpid = h.Vlan_tpid
	}
	if vh.IsGSO() {
		total, err := offload.Segments(pkt, vh)
		if err != nil {
			p.badOffload.Add(1)
			p.advance()
			return
		}
		p.superFrames.Add(1)
		p.seg = pending{active: true, slot: p.cur, total: total, hdr: vh, pkt: pkt, tagged: tagged, tci: frame.TCI(h.Vlan_tci), tpid: tpid}
		return
	}
	tagLen := 0
	if tagged {
		tagLen = frame.TagLen
	}
	dst := p.bufs[p.n][p.off+tagLen:]
	if len(pkt) > len(dst) {
		p.truncated.Add(1)
		p.advance()
		return
	}
	copy(dst, pkt)
	if vh.Flags&offload.FlagNeedsCsum != 0 {
		if err := offload.CompleteChecksum(dst[:len(pkt)], int(vh.CsumStart), int(vh.CsumOffset)); err != nil {
			p.badOffload.Add(1)
			p.advance()
			return
		}
		p.csumDone.Add(1)
	}
	p.emit(len(pkt), tagged, frame.TCI(h.Vlan_tci), tpid)
	p.advance()
}

// cutSegment writes the next segment of the pending super-frame.
func (p *Port) cutSegment() {
	sg := &p.seg
	tagLen := 0
	if sg.tagged {
		tagLen = frame.TagLen
	}
	m, err := offload.Segment(sg.pkt, sg.hdr, sg.next, p.bufs[p.n][p.off+tagLen:])
	if err != nil {
		p.badOffload.Add(1)
		sg.next = sg.total
	} else {
		p.emit(m, sg.tagged, sg.tci, sg.tpid)
		sg.next++
	}
	if sg.next >= sg.total {
		if err == nil {
			p.segmented.Add(1)
		}
		sg.active, sg.pkt = false, nil
		p.advance()
	}
}

// emit completes frame n of the batch, written at off (+4 when tagged),
// by putting the tag back in front of its EtherType.
func (p *Port) emit(length int, tagged bool, tci frame.TCI, tpid uint16) {
	if tagged {
		frame.PushTag(p.bufs[p.n], p.off+frame.TagLen, tci)
		binary.BigEndian.PutUint16(p.bufs[p.n][p.off+12:], tpid)
		length += frame.TagLen
	}
	p.sz[p.n] = length
	p.n++
}

// advance gives the current slot back to the kernel and moves on.
func (p *Port) advance() {
	p.release(p.cur)
	p.cur = (p.cur + 1) % p.slots
}

// Write implements l2.Port: each frame goes out with an empty virtio-net
// header written into its headroom, tags as they are in the frame.
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
	clear(b[off-offload.VnetHdrLen : off])
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
