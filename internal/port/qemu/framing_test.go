package qemu

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzStreamDecoder(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9}, uint8(5))
	f.Add([]byte{0, 0, 0, 0}, uint8(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint8(2))
	f.Add([]byte{0, 0, 0, 20, 1, 2}, uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		d := newDecoder(64)
		step := int(chunk%16) + 1
		var frames [][]byte
		consumed := 0
		for pos := 0; pos < len(stream); {
			space := d.space()
			n := copy(space, stream[pos:min(pos+step, len(stream))])
			d.added(n)
			pos += n
			for {
				ready := d.ready()
				fr, err := d.next()
				if ready != (err != nil || fr != nil) {
					// ReadNow keeps the port readable on ready: it must
					// match what next has to give, or frames are stranded.
					t.Fatalf("ready() = %v, but next() = %d bytes, %v", ready, len(fr), err)
				}
				if err != nil {
					if !errors.Is(err, ErrBadLength) {
						t.Fatalf("unexpected error %v", err)
					}
					goto done
				}
				if fr == nil {
					break
				}
				if len(fr) == 0 || len(fr) > 64 {
					t.Fatalf("decoded a frame of %d bytes", len(fr))
				}
				frames = append(frames, append([]byte(nil), fr...))
				consumed += 4 + len(fr)
			}
		}
	done:
		// Re-encoding what was decoded gives back the stream's prefix.
		var re []byte
		for _, fr := range frames {
			re = appendFrame(re, fr)
		}
		if !bytes.Equal(re, stream[:consumed]) {
			t.Fatalf("decode→encode is not the identity on the consumed prefix")
		}
	})
}
