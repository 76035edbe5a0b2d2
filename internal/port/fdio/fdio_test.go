package fdio_test

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/port/fdio"
)

func write(fd int, b []byte, off int) error { _, err := unix.Write(fd, b[off:]); return err }

// pair returns the two ends of a non-blocking SOCK_DGRAM socketpair as
// files (one frame per datagram, like a TAP) with their RawConns.
func pair(t *testing.T) (a, b *os.File, ra, rb syscall.RawConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b = os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	ra, _ = a.SyscallConn()
	rb, _ = b.SyscallConn()
	return
}

func TestReadWrite(t *testing.T) {
	_, _, ra, rb := pair(t)
	w := fdio.NewWriter(ra, write, "write")
	r := fdio.NewReader(rb, unix.Read, 100, 0)
	frames := [][]byte{[]byte("..one"), []byte("..two"), append([]byte(".."), make([]byte, 200)...), []byte("..four")}
	if n, err := w.Write(frames, []int{2, 2, 2, 2}); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	bufs, sizes := [][]byte{make([]byte, 300), make([]byte, 300), make([]byte, 300), make([]byte, 300)}, make([]int, 4)
	n, err := r.Read(bufs, sizes, 8)
	if err != nil || n != 3 || string(bufs[0][8:8+sizes[0]]) != "one" || string(bufs[2][8:8+sizes[2]]) != "four" {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if r.Dropped() != 1 {
		t.Fatalf("the 200-byte frame over the 100-byte maximum was not dropped: %d", r.Dropped())
	}
}

func TestFullQueueEndsTheBatch(t *testing.T) {
	_, _, ra, _ := pair(t)
	w := fdio.NewWriter(ra, write, "write")
	big := make([]byte, 60000)
	batch := [][]byte{big, big, big, big, big, big, big, big}
	offs := make([]int, len(batch))
	start, sent := time.Now(), 0
	for range 50 {
		n, err := w.Write(batch, offs)
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	if sent >= 50*len(batch) || time.Since(start) > 2*time.Second {
		t.Fatalf("sent %d of %d into a peer that never reads, in %v: a full queue must drop, not wait", sent, 50*len(batch), time.Since(start))
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	_, b, _, rb := pair(t)
	r := fdio.NewReader(rb, unix.Read, 0, 0)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read([][]byte{make([]byte, 64)}, []int{0}, 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read returned no error after Close")
		}
		if oe := fdio.OpError("read", fdio.Addr{Net: "test", Name: "b"}, true, err); !errors.Is(oe, net.ErrClosed) {
			t.Fatalf("OpError of a closed port = %v, want net.ErrClosed", oe)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

func TestZeroAllocs(t *testing.T) {
	_, _, ra, rb := pair(t)
	w := fdio.NewWriter(ra, write, "write")
	r := fdio.NewReader(rb, unix.Read, 0, 0)
	out, offs := [][]byte{make([]byte, 64), make([]byte, 64)}, []int{0, 0}
	bufs, sizes := [][]byte{make([]byte, 128), make([]byte, 128)}, []int{0, 0}
	if a := testing.AllocsPerRun(500, func() {
		w.Write(out, offs)
		r.Read(bufs, sizes, 0)
	}); a != 0 {
		t.Fatalf("write + read allocated %v times", a)
	}
}
