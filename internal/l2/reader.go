package l2

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/vlan"
)

// reader owns one port's ingress: its goroutine reads a batch, decides every
// frame and writes the results grouped by egress port. All its buffers are
// allocated up front (or on the first need, once), so that a batch
// allocates nothing.
type reader struct {
	s    *Switch
	id   PortID
	port Port
	feat offload.Features // the port's, for reading headers
	done chan struct{}
	stop func()   // set when a Poller reads the port instead of run
	pool *bufPool // where a Poller-driven reader borrows its buffers for each batch; nil: they are its own

	bufs  [][]byte // read buffers, frame i at bufs[i][Headroom:]
	sizes []int
	hdrs  []offload.VnetHdr // frame i's virtio-net header, as read (zero from plain ports)
	alt   [][]byte          // second copies, for frames that leave both tagged and untagged
	span  []span            // where each frame (and its copy) is after tagging
	ctr   batchCounters

	targets []*portEntry // egress ports of the frame being decided
	jobs    []job        // staged (frame, egress) pairs, chained per egress port
	heads   []int32      // by PortID: first job for that port, -1 if none
	tails   []int32
	dests   []*portEntry // by PortID: the entry jobs were staged for
	touched []PortID     // ports with staged jobs, in first-use order
	wbufs   [][]byte     // one Write call's frames
	woffs   []int
	segs    [][]byte // segments of a super-frame cut for a port without TSO/USO, made on first need
}

// span locates a frame in its buffer: b[start:end].
type span struct{ start, end, altStart, altEnd int }

type job struct {
	frame int32
	alt   bool
	next  int32
}

// newReader makes pe's reader. A pooled reader (one a Poller drives) owns
// no frame buffers: it borrows a set for each batch.
func newReader(s *Switch, pe *portEntry, pooled bool) *reader {
	batch, size := ReadGeometry(pe.port, s.opts.MaxFrameSize)
	r := &reader{
		s: s, id: pe.id, port: pe.port, feat: pe.feat, done: make(chan struct{}),
		sizes: make([]int, batch), hdrs: make([]offload.VnetHdr, batch),
		span: make([]span, batch), targets: make([]*portEntry, 0, 64),
		jobs: make([]job, 0, 4*batch), wbufs: make([][]byte, batch), woffs: make([]int, batch),
	}
	if pooled {
		r.pool = s.bufPool(batch, size)
	} else {
		r.bufs = makeBufs(batch, size)
	}
	return r
}

// ReadGeometry is how many frames a switch reads from p at once and how
// long each buffer is (Headroom included), for frames up to maxFrameSize
// (Options.MaxFrameSize) or super-frames if p carries virtio-net headers.
func ReadGeometry(p Port, maxFrameSize int) (batch, size int) {
	batch, size = max(p.BatchSize(), 1), maxFrameSize
	if p.Offloads()&offload.Vnet != 0 {
		size = max(size, MaxSuperFrame+frame.TagLen)
		batch = min(batch, SuperFrameBatch)
	}
	return batch, Headroom + size
}

func makeBufs(n, size int) [][]byte {
	backing := make([]byte, n*size)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = backing[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}

// run is the port's reader goroutine: it ends when Read fails, which
// RemovePort and Close cause by closing the port.
func (r *reader) run() {
	defer close(r.done)
	for {
		if err := r.step(); err != nil {
			r.failed(err)
			return
		}
	}
}

// failed logs why the port's reading ended, unless it was closed.
func (r *reader) failed(err error) {
	if !errors.Is(err, net.ErrClosed) {
		r.s.opts.Logger.Warn("port read failed; the port forwards no more until it is re-added",
			"switch", r.s.opts.Name, "port", r.id, "err", err)
	}
}

// wait blocks until the reader goroutine has ended.
func (r *reader) wait() {
	if r.s.manual || r.stop != nil {
		return
	}
	<-r.done
}

// readyFn returns what a Poller calls when p is readable: forward one batch
// read without waiting; false (watch no more) once the port fails.
func (r *reader) readyFn(p PollPort) func() bool {
	return func() bool {
		set := r.pool.get()
		r.bufs, r.alt, r.segs = set.bufs, set.alt, set.segs
		n, err := p.ReadNow(r.bufs, r.sizes, Headroom)
		if n > 0 {
			r.forward(n)
		}
		set.alt, set.segs = r.alt, r.segs // made on first need: kept with the set
		r.bufs, r.alt, r.segs = nil, nil, nil
		r.pool.put(set)
		if err != nil {
			r.failed(err)
			return false
		}
		return true
	}
}

// step reads one batch and forwards it.
func (r *reader) step() error {
	n, err := r.port.Read(r.bufs, r.sizes, Headroom)
	if n > 0 {
		r.forward(n)
	}
	return err
}

// forward decides and sends the first n frames of r.bufs.
func (r *reader) forward(n int) {
	snap := r.s.snap.Load()
	in := snap.port(r.id)
	if in == nil || in.r != r {
		return // removed while this batch was read
	}
	now := r.s.now()
	for i := 0; i < n; i++ {
		r.ctr.rxBytes += uint64(r.sizes[i])
		if reason := r.decide(snap, in, i, now); reason != dropNone {
			r.ctr.drops[reason]++
		}
	}
	r.flush()
	r.ctr.addTo(in.ctr, n)
}

// verdictDrops maps an ingress verdict to the drop counter it moves.
var verdictDrops = [...]DropReason{
	vlan.UntaggedNotAllowed: DropUntaggedNotAllowed,
	vlan.BadTag:             DropBadTag,
	vlan.TaggedOnAccess:     DropTaggedOnAccess,
	vlan.NotMember:          DropVLANNotAllowed,
}

// decide classifies frame i, learns its source, finds its egress ports and
// stages it for each, tagged or untagged as the port wants.
func (r *reader) decide(snap *snapshot, in *portEntry, i int, now int64) DropReason {
	b := r.bufs[i][:Headroom+r.sizes[i]]
	eth := frame.Ethernet(b[Headroom:])
	if eth.Check() != nil {
		return DropRunt
	}
	var h offload.VnetHdr
	if r.feat&offload.Vnet != 0 {
		h, _ = offload.DecodeVnetHdr(b[Headroom-offload.VnetHdrLen : Headroom])
		if h.Check(len(eth)) != nil {
			return DropBadOffload
		}
	}
	r.hdrs[i] = h
	tagged := eth.Tagged()
	var tci frame.TCI
	if tagged {
		tci = eth.TCI()
	}
	vid, verdict := in.cfg.VLAN.Ingress(tagged, tci.VID())
	if verdict != vlan.Accept {
		return verdictDrops[verdict]
	}
	src, dst := eth.Src(), eth.Dst()
	switch {
	case !src.IsUnicastStation():
		return DropInvalidSource
	case in.cfg.SpoofGuard && src != in.cfg.MAC:
		return DropSpoofedSource
	case dst.IsReservedGroup():
		return DropReservedAddress
	}
	r.learn(snap, in, vid, src, now)

	r.targets = r.targets[:0]
	if !dst.IsMulticast() {
		if p, ok := r.s.fdb.Lookup(vid, dst, now); ok {
			pe := snap.port(p)
			if p == r.id || pe != nil && sameGroup(in, pe) {
				return DropFiltered
			}
			if pe != nil && pe.cfg.VLAN.Member.Contains(vid) {
				r.targets = append(r.targets, pe)
			}
		}
	}
	if len(r.targets) == 0 {
		for _, pe := range snap.live {
			if pe.id != r.id && !sameGroup(in, pe) && pe.cfg.VLAN.Member.Contains(vid) {
				r.targets = append(r.targets, pe)
			}
		}
		r.ctr.floods++
	}
	if h.Flags&offload.FlagNeedsCsum != 0 && !h.IsGSO() && !r.allTake(h) {
		// Complete it once, for every target: the buffer is shared.
		if offload.CompleteChecksum(eth, int(h.CsumStart), int(h.CsumOffset)) != nil {
			return DropBadOffload
		}
		r.hdrs[i].Flags = h.Flags&^offload.FlagNeedsCsum | offload.FlagDataValid
	}
	r.stage(i, b, tagged, tci.WithVID(vid))
	return dropNone
}

// sameGroup reports whether in and out are in one split-horizon group.
func sameGroup(in, out *portEntry) bool { return in.cfg.Group != 0 && in.cfg.Group == out.cfg.Group }

// allTake reports whether every target can send a frame with header h as it is.
func (r *reader) allTake(h offload.VnetHdr) bool {
	for _, pe := range r.targets {
		if !pe.feat.Takes(h) {
			return false
		}
	}
	return true
}

func (r *reader) learn(snap *snapshot, in *portEntry, vid frame.VID, src frame.MAC, now int64) {
	res, other := r.s.fdb.Learn(vid, src, r.id, in.cfg.MACLimit, now)
	switch res {
	case RefusedFull, RefusedPortLimit, RefusedStatic:
		r.ctr.learnRefused++
	case Moved:
		r.ctr.moves++
		from := "(removed)"
		if pe := snap.port(other); pe != nil {
			from = pe.name
		}
		r.s.reportMove(Move{Switch: r.s.opts.Name, MAC: src, VID: vid, From: from, To: in.name}, now)
	}
}

// stage puts frame i (b[Headroom:], tagged or not as it arrived) into the
// form each target wants and queues it. tagTCI is the tag to carry where
// it leaves tagged: the ingress PCP and DEI with the frame's VLAN.
func (r *reader) stage(i int, b []byte, tagged bool, tagTCI frame.TCI) {
	needU, needT := false, false
	for _, pe := range r.targets {
		if pe.cfg.VLAN.Untagged.Contains(tagTCI.VID()) {
			needU = true
		} else {
			needT = true
		}
	}
	sp := &r.span[i]
	sp.start, sp.end = Headroom, len(b)
	if needU && needT {
		if r.alt == nil {
			r.alt = makeBufs(len(r.bufs), len(r.bufs[0]))
		}
		a := r.alt[i][:len(b)]
		copy(a[Headroom:], b[Headroom:])
		sp.altStart, sp.altEnd = setTag(a, Headroom, tagged, true, tagTCI), len(a)
		sp.start = setTag(b, Headroom, tagged, false, tagTCI)
	} else if needU || needT {
		sp.start = setTag(b, Headroom, tagged, needT, tagTCI)
	}
	for _, pe := range r.targets {
		useAlt := needU && needT && !pe.cfg.VLAN.Untagged.Contains(tagTCI.VID())
		r.enqueue(pe, i, useAlt)
	}
}

// setTag brings the frame b[start:] (tagged or not) into the wanted form
// in place and returns its new start. The frame is known to be valid.
func setTag(b []byte, start int, tagged, want bool, tci frame.TCI) int {
	switch {
	case tagged && want:
		frame.Ethernet(b[start:]).SetTCI(tci)
	case tagged && !want:
		start, _, _ = frame.PopTag(b, start)
	case !tagged && want:
		start, _ = frame.PushTag(b, start, tci)
	}
	return start
}

// enqueue stages frame i (or its copy) for pe, writing out what is staged
// first if the job list is full.
func (r *reader) enqueue(pe *portEntry, i int, useAlt bool) {
	if len(r.jobs) == cap(r.jobs) {
		r.flush()
	}
	if int(pe.id) >= len(r.heads) {
		r.grow(int(pe.id) + 1)
	}
	j := int32(len(r.jobs))
	r.jobs = append(r.jobs, job{frame: int32(i), alt: useAlt, next: -1})
	if r.heads[pe.id] < 0 {
		r.heads[pe.id] = j
		r.dests[pe.id] = pe
		r.touched = append(r.touched, pe.id)
	} else {
		r.jobs[r.tails[pe.id]].next = j
	}
	r.tails[pe.id] = j
}

// grow makes the per-port tables hold n ports (on configuration growth only).
func (r *reader) grow(n int) {
	n = max(n, 2*len(r.heads), 16)
	heads := make([]int32, n)
	for k := range heads {
		heads[k] = -1
	}
	copy(heads, r.heads)
	r.heads = heads
	r.tails = append(r.tails, make([]int32, n-len(r.tails))...)
	r.dests = append(r.dests, make([]*portEntry, n-len(r.dests))...)
}

// flush writes the staged frames, one Write per egress port, and counts
// what each port took and dropped.
func (r *reader) flush() {
	for _, id := range r.touched {
		pe := r.dests[id]
		k := 0
		for j := r.heads[id]; j >= 0; j = r.jobs[j].next {
			jb := r.jobs[j]
			sp := &r.span[jb.frame]
			buf, start := r.bufs[jb.frame][:sp.end], sp.start
			if jb.alt {
				buf, start = r.alt[jb.frame][:sp.altEnd], sp.altStart
			}
			// The header moves with the headers: a tag pushed (start
			// earlier) or popped (later) shifts the checksum start.
			h := r.hdrs[jb.frame].Shift(Headroom - start)
			if !pe.feat.Takes(h) {
				r.write(pe, k)
				k = 0
				r.segment(pe, buf[start:], h)
				continue
			}
			if pe.feat&offload.Vnet != 0 {
				h.Encode(buf[start-offload.VnetHdrLen : start])
			}
			r.wbufs[k], r.woffs[k] = buf, start
			k++
		}
		r.write(pe, k)
		r.heads[id], r.dests[id] = -1, nil
	}
	r.touched = r.touched[:0]
	r.jobs = r.jobs[:0]
}

// write sends r.wbufs[:k] to pe and counts what it took and dropped. A
// frame the port's device does not take (frame.ErrTooBig) is counted
// too-big, and the frames after it are written.
func (r *reader) write(pe *portEntry, k int) {
	for off := 0; off < k; {
		sent, err := pe.port.Write(r.wbufs[off:k], r.woffs[off:k])
		var bytes uint64
		for x := off; x < off+sent; x++ {
			bytes += uint64(len(r.wbufs[x]) - r.woffs[x])
		}
		pe.ctr.txPackets.Add(uint64(sent))
		pe.ctr.txBytes.Add(bytes)
		off += sent
		switch {
		case off == k:
		case errors.Is(err, frame.ErrTooBig):
			pe.ctr.drops[DropTooBig].Add(1)
			off++
			continue
		case err != nil:
			pe.ctr.drops[DropPortError].Add(uint64(k - off))
		default:
			pe.ctr.drops[DropQueueFull].Add(uint64(k - off))
		}
		return
	}
}

// segment sends the super-frame f to pe, which cannot take it whole, as
// wire-sized segments with complete checksums, written a batch at a time.
func (r *reader) segment(pe *portEntry, f []byte, h offload.VnetHdr) {
	total, err := offload.Segments(f, h)
	if err != nil { // also a plain frame with a partial checksum, which stage completes first
		pe.ctr.drops[DropBadOffload].Add(1)
		return
	}
	if r.segs == nil {
		r.segs = makeBufs(len(r.wbufs), Headroom+r.s.opts.MaxFrameSize)
	}
	k := 0
	for i := 0; i < total; i++ {
		n, err := offload.Segment(f, h, i, r.segs[k][Headroom:])
		if err != nil {
			pe.ctr.drops[DropBadOffload].Add(uint64(total - i))
			break
		}
		seg := r.segs[k][:Headroom+n]
		if pe.feat&offload.Vnet != 0 {
			clear(seg[Headroom-offload.VnetHdrLen : Headroom])
		}
		r.wbufs[k], r.woffs[k] = seg, Headroom
		if k++; k == len(r.segs) {
			r.write(pe, k)
			k = 0
		}
	}
	r.write(pe, k)
	pe.ctr.segmented.Add(1)
}

// bufSet is the frame buffers of one batch: read buffers, and second
// copies and segments made on first need.
type bufSet struct {
	busy            atomic.Bool
	bufs, alt, segs [][]byte
}

// bufPool lends buffer sets of one geometry to the readers a Poller
// drives. Such a reader needs buffers only while it forwards a batch, on
// one of the Poller's threads: a switch needs as many sets as it has
// threads forwarding at once, not one per port (a super-frame set is
// 1 MiB, which 1,000 busy ports would each keep).
type bufPool struct {
	n, size int
	sets    atomic.Pointer[[]*bufSet]
	mu      sync.Mutex // serialises growth
}

// bufPool returns the switch's pool for n buffers of size bytes; s.mu is held.
func (s *Switch) bufPool(n, size int) *bufPool {
	if s.pools == nil {
		s.pools = make(map[[2]int]*bufPool)
	}
	key := [2]int{n, size}
	p := s.pools[key]
	if p == nil {
		p = &bufPool{n: n, size: size}
		p.sets.Store(&[]*bufSet{})
		s.pools[key] = p
	}
	return p
}

// get takes a free set, making one when all are lent (as many times as
// there are threads forwarding at once, then never).
func (p *bufPool) get() *bufSet {
	for _, b := range *p.sets.Load() {
		if !b.busy.Load() && b.busy.CompareAndSwap(false, true) {
			return b
		}
	}
	b := &bufSet{bufs: makeBufs(p.n, p.size)}
	b.busy.Store(true)
	p.mu.Lock()
	sets := append(slices.Clone(*p.sets.Load()), b)
	p.sets.Store(&sets)
	p.mu.Unlock()
	return b
}

func (p *bufPool) put(b *bufSet) { b.busy.Store(false) }
