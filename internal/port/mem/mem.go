// Package mem provides in-memory port pairs: what one end writes, the other
// reads. They satisfy l2.Port for tests, benchmarks and demos; a full queue
// drops and counts, as a real device would, and nothing allocates per frame.
package mem

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/offload"
)

// Defaults for NewPair.
const (
	DefaultQueueLen  = 1024 // frames buffered per direction
	DefaultMaxFrame  = 9216 // bytes, jumbo frames included
	DefaultBatchSize = 64
)

// ErrTooBig is returned by Write for a frame longer than the port's
// maximum (frame.ErrTooBig: the frames after it were not tried).
var ErrTooBig = fmt.Errorf("mem: longer than the port's maximum frame size: %w", frame.ErrTooBig)

// Port is one end of an in-memory link. The zero value is not usable; make
// ports with NewPair.
type Port struct {
	rx      *queue // frames written by the peer, waiting for Read
	peer    *Port
	dropped atomic.Uint64 // frames written towards this port that it could not take
}

// Config sets a pair's sizes; zero fields take the defaults.
type Config struct {
	QueueLen  int // frames buffered per direction
	MaxFrame  int // longest frame accepted, in bytes
	BatchSize int // what BatchSize reports
	// Offloads is what both ends report. With offload.Vnet, every frame
	// carries its virtio-net header in front of it through the link (it
	// does not count towards MaxFrame).
	Offloads offload.Features
}

// NewPair returns the two connected ends of a new in-memory link.
func NewPair(c Config) (a, b *Port) {
	if c.QueueLen <= 0 {
		c.QueueLen = DefaultQueueLen
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Offloads&offload.Vnet != 0 {
		c.MaxFrame += offload.VnetHdrLen
	}
	a = &Port{rx: newQueue(c)}
	b = &Port{rx: newQueue(c)}
	a.peer, b.peer = b, a
	return a, b
}

// Read implements l2.Port: it blocks until a frame is queued or the port is closed.
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, tooBig, err := p.rx.get(bufs, sizes, offset)
	if tooBig > 0 {
		p.dropped.Add(uint64(tooBig))
	}
	return n, err
}

// Write implements l2.Port: it queues frames for the peer's Read and stops
// at the first one that does not fit.
func (p *Port) Write(bufs [][]byte, offsets []int) (int, error) {
	n, err := p.peer.rx.put(bufs, offsets)
	switch {
	case err == ErrTooBig:
		p.peer.dropped.Add(1) // the frames after it are the caller's to write again
	case n < len(bufs):
		p.peer.dropped.Add(uint64(len(bufs) - n))
	}
	return n, err
}

// BatchSize implements l2.Port.
func (p *Port) BatchSize() int { return p.rx.batch }

// Offloads implements l2.Port: what the pair was made with.
func (p *Port) Offloads() offload.Features { return p.rx.feat }

// Close implements l2.Port: a blocked Read returns net.ErrClosed, and so do
// the peer's later writes to this end. The peer stays open.
func (p *Port) Close() error {
	p.rx.close()
	return nil
}

// Dropped returns how many frames towards this end were dropped: its queue
// was full or closed, or a frame was too big.
func (p *Port) Dropped() uint64 { return p.dropped.Load() }

// Queued returns how many frames wait to be read at this end.
func (p *Port) Queued() int {
	p.rx.mu.Lock()
	defer p.rx.mu.Unlock()
	return p.rx.n
}

// queue is a bounded ring of preallocated frame slots.
type queue struct {
	mu     sync.Mutex
	ready  sync.Cond // signalled when a frame is queued or the queue closes
	slots  [][]byte  // each of capacity maxFrame
	head   int       // index of the oldest frame
	n      int       // frames queued
	closed bool
	batch  int
	feat   offload.Features
	hdr    int // bytes of header in front of each frame: VnetHdrLen or 0
}

func newQueue(c Config) *queue {
	q := &queue{slots: make([][]byte, c.QueueLen), batch: c.BatchSize, feat: c.Offloads}
	if c.Offloads&offload.Vnet != 0 {
		q.hdr = offload.VnetHdrLen
	}
	q.ready.L = &q.mu
	backing := make([]byte, c.QueueLen*c.MaxFrame)
	for i := range q.slots {
		q.slots[i] = backing[i*c.MaxFrame : i*c.MaxFrame : (i+1)*c.MaxFrame]
	}
	return q
}

func (q *queue) put(bufs [][]byte, offsets []int) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, net.ErrClosed
	}
	i := 0
	for ; i < len(bufs); i++ {
		f := bufs[i][offsets[i]-q.hdr:]
		if q.n == len(q.slots) {
			break
		}
		s := (q.head + q.n) % len(q.slots)
		if len(f) > cap(q.slots[s]) {
			q.signal(i)
			return i, ErrTooBig
		}
		q.slots[s] = append(q.slots[s][:0], f...)
		q.n++
	}
	q.signal(i)
	return i, nil
}

func (q *queue) signal(added int) {
	if added > 0 {
		q.ready.Signal()
	}
}

func (q *queue) get(bufs [][]byte, sizes []int, offset int) (n, tooBig int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for n == 0 { // a batch of only oversize frames reads on
		for q.n == 0 && !q.closed {
			q.ready.Wait()
		}
		if q.closed {
			return 0, tooBig, net.ErrClosed
		}
		for n < len(bufs) && q.n > 0 {
			f := q.slots[q.head]
			q.head = (q.head + 1) % len(q.slots)
			q.n--
			if len(f) > len(bufs[n])-offset+q.hdr {
				tooBig++
				continue
			}
			sizes[n] = copy(bufs[n][offset-q.hdr:], f) - q.hdr
			n++
		}
	}
	return n, tooBig, nil
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.ready.Broadcast()
}
