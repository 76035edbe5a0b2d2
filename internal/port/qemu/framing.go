package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// QEMU's "-netdev stream" sends each frame behind a 4-byte big-endian
// length (net/stream.c; the same framing as the older "-netdev socket").
const lenPrefix = 4

// ErrBadLength: the peer announced a frame of length 0 or over the maximum.
var ErrBadLength = errors.New("qemu: bad frame length on the stream")

// decoder splits a byte stream into length-prefixed frames. It owns a
// buffer that holds at most one partial frame between reads.
type decoder struct {
	buf        []byte // capacity: one whole maximal frame plus its prefix, twice
	start, end int    // buf[start:end] holds undecoded bytes
	max        int    // longest acceptable frame
}

func newDecoder(maxFrame int) *decoder {
	return &decoder{buf: make([]byte, 2*(maxFrame+lenPrefix)), max: maxFrame}
}

// space returns the free tail of the buffer for the next read, moving the
// undecoded bytes to the front first when the tail is short.
func (d *decoder) space() []byte {
	if len(d.buf)-d.end < d.max+lenPrefix {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	return d.buf[d.end:]
}

// added tells the decoder that n bytes were read into space().
func (d *decoder) added(n int) { d.end += n }

// next returns the next whole frame (valid until the next space call), or
// nil when more bytes are needed, or ErrBadLength.
func (d *decoder) next() ([]byte, error) {
	n, bad, whole := d.head()
	switch {
	case bad:
		return nil, fmt.Errorf("%w: %d bytes, allowed 1 to %d", ErrBadLength, n, d.max)
	case !whole:
		return nil, nil
	}
	f := d.buf[d.start+lenPrefix : d.start+lenPrefix+n]
	d.start += lenPrefix + n
	return f, nil
}

// ready reports whether next has something to return: a whole frame, or
// a bad length.
func (d *decoder) ready() bool {
	_, bad, whole := d.head()
	return bad || whole
}

// head reads the next frame's length n, if its prefix is buffered: bad if
// n is 0 or over the maximum, whole if the frame is buffered entire.
func (d *decoder) head() (n int, bad, whole bool) {
	if d.end-d.start < lenPrefix {
		return 0, false, false
	}
	n = int(binary.BigEndian.Uint32(d.buf[d.start:]))
	if n == 0 || n > d.max {
		return n, true, false
	}
	return n, false, d.end-d.start >= lenPrefix+n
}

// pending reports how many bytes of a partial frame are buffered.
func (d *decoder) pending() int { return d.end - d.start }

func (d *decoder) reset() { d.start, d.end = 0, 0 }

// appendFrame appends frame f with its length prefix to b.
func appendFrame(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}
