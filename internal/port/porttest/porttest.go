// Package porttest holds the checks every port backend must pass, so that
// each backend's tests call one shared check instead of restating it. It
// does not import the core: it names the methods it needs.
package porttest

import (
	"errors"
	"net"
	"testing"
	"time"
)

// Reader is the part of l2.Port the checks use.
type Reader interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Close() error
}

// CloseUnblocksRead reads p as the switch does (on and on, since a device
// may carry traffic of its own), closes it, and checks that the blocked
// Read returns an error wrapping net.ErrClosed.
func CloseUnblocksRead(t testing.TB, p Reader) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 128+9216)}, []int{0}
		for {
			if _, err := p.Read(bufs, sizes, 128); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

// Writer is the Write half of l2.Port.
type Writer interface {
	Write(bufs [][]byte, offsets []int) (int, error)
}

// WriteReaches writes frame f through p, with 64 bytes of zeroed headroom
// in front of it (an empty virtio-net header for ports that carry one),
// and checks that in, a socket at the far end, receives payload within 5 s.
func WriteReaches(t testing.TB, p Writer, f []byte, in net.PacketConn, payload string) {
	t.Helper()
	if n, err := p.Write([][]byte{append(make([]byte, 64), f...)}, []int{64}); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	in.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(payload)+64)
	if n, _, err := in.ReadFrom(buf); err != nil || string(buf[:n]) != payload {
		t.Fatalf("far end read %q, %v; want %q", buf[:n], err, payload)
	}
}
