package l2

import (
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/offload"
)

// Headroom is the number of bytes the switch reserves in front of every
// frame it reads: room to push an 802.1Q tag in place, and for a backend to
// put its own header (a virtio-net header, VXLAN's outer headers) in front
// of the frame without a copy.
const Headroom = 128

// WriteHeadroom is the headroom every frame handed to Port.Write has in
// front of it: Headroom less the one tag the switch may have pushed.
const WriteHeadroom = Headroom - frame.TagLen

// MaxSuperFrame is the longest frame a port with virtio-net headers may
// read: a TSO/USO super-frame (64 KiB, Linux's GSO_MAX_SIZE).
const MaxSuperFrame = 65536

// SuperFrameBatch bounds the frames read at once from a port with
// virtio-net headers, whatever its BatchSize: each needs a 64 KiB buffer,
// and 16 of them (1 MiB per port) already carry a megabyte per system call.
const SuperFrameBatch = 16

// A Port is where frames enter and leave a switch: a TAP device, an
// AF_PACKET socket, a QEMU socket, an in-memory pipe. Backends implement it
// without importing this package. The switch owns a port from AddPort on and
// closes it when the port is removed.
//
// Buffers belong to the caller: a port never keeps a buffer, or a slice of
// one, after Read or Write returns.
//
// A port whose Offloads include offload.Vnet carries a virtio-net header in
// the offload.VnetHdrLen bytes right in front of every frame, both ways:
// Read stores the header there, and Write finds the header the switch put
// there (describing the frame as it leaves: its checksum offsets moved
// with any tag pushed or popped). Such a port reads super-frames of up to
// MaxSuperFrame bytes. A frame reaches Write with a partial checksum or as
// a super-frame only if the port's Offloads take it (offload.Features.Takes);
// for other ports the switch completes checksums and cuts super-frames into
// wire-sized segments itself.
type Port interface {
	// Read blocks until at least one frame is available and reads up to
	// len(bufs) of them: frame i is copied to bufs[i][offset:] and its
	// length stored in sizes[i]. It returns the number of frames read.
	// A frame longer than len(bufs[i])-offset is dropped and counted by the
	// port. After Close, Read returns an error wrapping net.ErrClosed; any
	// error ends the switch's reader for this port.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write sends the frames bufs[i][offsets[i]:], in order. Each has at
	// least WriteHeadroom bytes in front of it that the port may overwrite;
	// it must not change the frame itself. Write returns how many frames,
	// from the first, it accepted; the rest were dropped, because a queue
	// was full (err == nil) or for the reason err gives. It is safe to call
	// from several goroutines at once and concurrently with Read, and never
	// blocks for long: a full queue drops.
	Write(bufs [][]byte, offsets []int) (n int, err error)

	// Offloads says whether frames carry virtio-net headers and what the
	// port takes on Write besides plain frames. It never changes.
	Offloads() offload.Features

	// BatchSize is the number of frames Read and Write handle best at once.
	BatchSize() int

	// Close unblocks Read and releases the port's resources.
	Close() error
}

// A PollPort is a Port that a Poller can drive: instead of a goroutine of
// its own blocking in Read, a forwarding thread waits on its descriptor
// with many others and reads it without waiting when it is readable.
type PollPort interface {
	Port
	// PollFD returns a descriptor that is readable while frames wait. It
	// stays valid until Close.
	PollFD() int
	// ReadNow reads like Read but never waits: it returns 0 when no frame
	// is there (also when what made the descriptor readable was dropped).
	ReadNow(bufs [][]byte, sizes []int, offset int) (n int, err error)
}

// A CountingPort is a Port that keeps counters of its own, about what the
// switch never sees: frames its backend dropped or cut off, peers it
// refused. Switch.Ports reports them. Names are kebab-case ("bad-peers",
// "ring-drops"). BackendCounters may be called at any time, also during
// and after Close, from any goroutine; it may make a system call but must
// not block.
type CountingPort interface {
	Port
	BackendCounters() map[string]uint64
}

// A Poller runs the reads of PollPorts on forwarding threads of its own
// (package poll implements it); a switch without one reads every port on
// a goroutine of its own.
type Poller interface {
	// Watch calls ready on a forwarding thread whenever fd is readable,
	// until ready returns false or stop is called. Once stop returns,
	// ready is not running and will not be called again. Watch and stop
	// wait for the forwarding thread: a ready function must not call them.
	Watch(fd int, ready func() bool) (stop func(), err error)
}
