package mem_test

import (
	"errors"
	"net"
	"testing"

	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/port/porttest"
)

var _ l2.Port = (*mem.Port)(nil)

func bufs(n, size int) ([][]byte, []int) {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, size)
	}
	return b, make([]int, n)
}

func TestPairCarriesFramesBothWays(t *testing.T) {
	a, b := mem.NewPair(mem.Config{})
	in, sizes := bufs(4, 64)
	for i, p := range []*mem.Port{a, b} {
		peer := []*mem.Port{b, a}[i]
		frames := [][]byte{[]byte("xxxxone"), []byte("xxtwo")}
		if n, err := p.Write(frames, []int{4, 2}); n != 2 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		n, err := peer.Read(in, sizes, 8)
		if err != nil || n != 2 || string(in[0][8:8+sizes[0]]) != "one" || string(in[1][8:8+sizes[1]]) != "two" {
			t.Fatalf("Read = %d, %v, %q %q", n, err, in[0][8:8+sizes[0]], in[1][8:8+sizes[1]])
		}
	}
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	a, b := mem.NewPair(mem.Config{QueueLen: 2})
	n, err := a.Write([][]byte{{1}, {2}, {3}}, []int{0, 0, 0})
	if n != 2 || err != nil || b.Dropped() != 1 || b.Queued() != 2 {
		t.Fatalf("Write into a 2-frame queue = %d, %v; dropped %d queued %d", n, err, b.Dropped(), b.Queued())
	}
}

func TestOversize(t *testing.T) {
	a, b := mem.NewPair(mem.Config{MaxFrame: 4})
	n, err := a.Write([][]byte{{1}, {1, 2, 3, 4, 5}, {3}}, []int{0, 0, 0})
	if n != 1 || !errors.Is(err, mem.ErrTooBig) {
		t.Fatalf("Write with an oversize frame = %d, %v", n, err)
	}
	// A frame bigger than the reader's buffer is dropped at read time.
	a.Write([][]byte{{1, 2, 3, 4}, {9}}, []int{0, 0})
	in, sizes := bufs(4, 2)
	n, err = b.Read(in, sizes, 0)
	if err != nil || n != 2 || sizes[0] != 1 || sizes[1] != 1 || in[1][0] != 9 || b.Dropped() != 2 { // the big one at the first Write (the one after it is the writer's to write again), 1 here
		t.Fatalf("Read = %d, %v, sizes %v, dropped %d", n, err, sizes[:n], b.Dropped())
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	a, b := mem.NewPair(mem.Config{})
	porttest.CloseUnblocksRead(t, a)
	if n, err := b.Write([][]byte{{1}}, []int{0}); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write towards a closed end = %d, %v", n, err)
	}
}

func TestZeroAllocs(t *testing.T) {
	a, b := mem.NewPair(mem.Config{})
	frames := [][]byte{make([]byte, 64), make([]byte, 64)}
	offs := []int{0, 0}
	in, sizes := bufs(2, 128)
	if allocs := testing.AllocsPerRun(1000, func() {
		a.Write(frames, offs)
		b.Read(in, sizes, 0)
	}); allocs != 0 {
		t.Fatalf("write + read allocated %v times", allocs)
	}
}
