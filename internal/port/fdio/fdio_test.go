package fdio_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/port/fdio"
)

func write(fd int, b []byte, off int) error { _, err := unix.Write(fd, b[off:]); return err }

// pair returns the two ends of a non-blocking SOCK_DGRAM socketpair (one
// frame per datagram, like a TAP) as Conns: fdio.FDs, or with raw set
// files in the runtime's poller through fdio.RawConn. Closing b closes
// the second end.
func pair(t *testing.T, raw bool) (a, b fdio.Conn, closeB func() error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if raw {
		fa, fb := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		t.Cleanup(func() { fa.Close(); fb.Close() })
		ra, _ := fa.SyscallConn()
		rb, _ := fb.SyscallConn()
		return fdio.RawConn(ra), fdio.RawConn(rb), fb.Close
	}
	da, err := fdio.NewFD(fds[0], "a")
	if err != nil {
		t.Fatal(err)
	}
	db, err := fdio.NewFD(fds[1], "b")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { da.Close(); db.Close() })
	return da, db, db.Close
}

// bothConns runs f with FD pairs and with RawConn pairs.
func bothConns(t *testing.T, f func(t *testing.T, raw bool)) {
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "FD", true: "RawConn"}[raw], func(t *testing.T) { f(t, raw) })
	}
}

func TestReadWrite(t *testing.T) { bothConns(t, testReadWrite) }

func testReadWrite(t *testing.T, raw bool) {
	ra, rb, _ := pair(t, raw)
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

func TestFullQueueEndsTheBatch(t *testing.T) { bothConns(t, testFullQueueEndsTheBatch) }

func testFullQueueEndsTheBatch(t *testing.T, raw bool) {
	ra, _, _ := pair(t, raw)
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

func TestCloseUnblocksRead(t *testing.T) { bothConns(t, testCloseUnblocksRead) }

func testCloseUnblocksRead(t *testing.T, raw bool) {
	_, rb, closeB := pair(t, raw)
	r := fdio.NewReader(rb, unix.Read, 0, 0)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read([][]byte{make([]byte, 64)}, []int{0}, 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	closeB()
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

func TestZeroAllocs(t *testing.T) { bothConns(t, testZeroAllocs) }

func testZeroAllocs(t *testing.T, raw bool) {
	ra, rb, _ := pair(t, raw)
	w := fdio.NewWriter(ra, write, "write")
	r := fdio.NewReader(rb, unix.Read, 0, 0)
	out, offs := [][]byte{make([]byte, 64), make([]byte, 64)}, []int{0, 0}
	bufs, sizes := [][]byte{make([]byte, 128), make([]byte, 128)}, []int{0, 0}
	if a := testing.AllocsPerRun(500, func() {
		w.Write(out, offs)
		r.Read(bufs, sizes, 0)
		w.Write(out, offs)
		r.ReadNow(bufs, sizes, 0)
	}); a != 0 {
		t.Fatalf("write + read allocated %v times", a)
	}
}

// ReadNow is what a forwarding thread calls when epoll said "readable":
// it must never wait, also when the frame it was told about is gone.
func TestReadNowNeverWaits(t *testing.T) { bothConns(t, testReadNowNeverWaits) }

func testReadNowNeverWaits(t *testing.T, raw bool) {
	ra, rb, closeB := pair(t, raw)
	w := fdio.NewWriter(ra, write, "write")
	r := fdio.NewReader(rb, unix.Read, 100, 0)
	bufs, sizes := [][]byte{make([]byte, 300), make([]byte, 300)}, make([]int, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := r.ReadNow(bufs, sizes, 0); n != 0 || err != nil {
			t.Errorf("ReadNow on an empty queue = %d, %v; want 0, nil", n, err)
		}
		// Only a frame that is dropped (too long): still nothing to return.
		w.Write([][]byte{make([]byte, 200)}, []int{0})
		if n, err := r.ReadNow(bufs, sizes, 0); n != 0 || err != nil {
			t.Errorf("ReadNow after a dropped frame = %d, %v; want 0, nil", n, err)
		}
		w.Write([][]byte{[]byte("one"), []byte("two")}, []int{0, 0})
		if n, err := r.ReadNow(bufs, sizes, 0); n != 2 || err != nil || string(bufs[1][:sizes[1]]) != "two" {
			t.Errorf("ReadNow with two frames queued = %d, %v", n, err)
		}
		closeB()
		if _, err := r.ReadNow(bufs, sizes, 0); err == nil {
			t.Error("ReadNow after Close returned no error")
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ReadNow waited")
	}
}
