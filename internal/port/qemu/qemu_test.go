package qemu_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/qemu"
)

var (
	_ l2.PollPort     = (*qemu.Stream)(nil)
	_ l2.PollPort     = (*qemu.Dgram)(nil)
	_ l2.CountingPort = (*qemu.Stream)(nil)
	_ l2.CountingPort = (*qemu.Dgram)(nil)
)

// A mode reads a port as a switch does: blocking in Read on a goroutine of
// the port's own, or as a forwarding thread, calling ReadNow whenever the
// port's PollFD is readable.
type mode struct {
	name string
	read func(p l2.Port, bufs [][]byte, sizes []int, offset int) (int, error)
}

var modes = []mode{
	{"goroutine", func(p l2.Port, bufs [][]byte, sizes []int, offset int) (int, error) {
		return p.Read(bufs, sizes, offset)
	}},
	{"poller", pollRead},
}

// pollRead calls ReadNow only when poll(2) says the PollFD is readable, until
// ReadNow returns frames or fails: a port whose descriptor does not become
// readable when it should makes the test time out. A closed PollFD
// reports POLLNVAL, and ReadNow then fails.
func pollRead(p l2.Port, bufs [][]byte, sizes []int, offset int) (int, error) {
	pp := p.(l2.PollPort)
	fds := []unix.PollFd{{Fd: int32(pp.PollFD()), Events: unix.POLLIN}}
	for {
		if k, _ := unix.Poll(fds, 1000); k <= 0 {
			continue
		}
		if n, err := pp.ReadNow(bufs, sizes, offset); n > 0 || err != nil {
			return n, err
		}
	}
}

// bothModes runs test once per mode.
func bothModes(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

func frameN(i int, size int) []byte {
	f := make([]byte, size)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00})
	binary.BigEndian.PutUint32(f[14:], uint32(i))
	return f
}

func framed(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func listen(t *testing.T, cfg qemu.Config) *qemu.Stream {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "vm.sock")
	}
	s, err := qemu.ListenStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *qemu.Stream) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: s.Addr(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type result struct {
	frames [][]byte
	err    error
}

// readAsync reads one batch from the port on another goroutine.
func readAsync(m mode, p l2.Port) chan result {
	ch := make(chan result, 1)
	go func() {
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		sizes := make([]int, 8)
		n, err := m.read(p, bufs, sizes, 32)
		var r result
		for i := 0; i < n; i++ {
			r.frames = append(r.frames, bufs[i][32:32+sizes[i]])
		}
		r.err = err
		ch <- r
	}()
	return ch
}

func wait(t *testing.T, ch chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return")
	}
	return result{}
}

func TestStreamBothWays(t *testing.T) { bothModes(t, testStreamBothWays) }

func testStreamBothWays(t *testing.T, m mode) {
	s := listen(t, qemu.Config{})
	if n, err := s.Write([][]byte{frameN(0, 60)}, []int{0}); n != 0 || !errors.Is(err, qemu.ErrNotConnected) {
		t.Fatalf("Write with no peer = %d, %v", n, err)
	}
	ch := readAsync(m, s)
	c := dial(t, s)
	// Two frames in one write, the third cut across two writes.
	data := framed(frameN(1, 60), frameN(2, 100), frameN(3, 1514))
	c.Write(data[:200])
	r := wait(t, ch)
	if r.err != nil || len(r.frames) != 2 || !bytes.Equal(r.frames[0], frameN(1, 60)) || !bytes.Equal(r.frames[1], frameN(2, 100)) {
		t.Fatalf("first Read = %d frames, %v", len(r.frames), r.err)
	}
	ch = readAsync(m, s)
	c.Write(data[200:])
	if r = wait(t, ch); len(r.frames) != 1 || !bytes.Equal(r.frames[0], frameN(3, 1514)) {
		t.Fatalf("second Read = %d frames, %v", len(r.frames), r.err)
	}
	// Port → peer, framed.
	out := [][]byte{append(make([]byte, 8), frameN(4, 60)...), append(make([]byte, 8), frameN(5, 64)...)}
	if n, err := s.Write(out, []int{8, 8}); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, len(framed(frameN(4, 60), frameN(5, 64))))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, framed(frameN(4, 60), frameN(5, 64))) {
		t.Fatalf("peer read %x, %v", got, err)
	}
	if st := s.Stats(); st.Connections != 1 || st.BadPeers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStreamBadPeers(t *testing.T) { bothModes(t, testStreamBadPeers) }

func testStreamBadPeers(t *testing.T, m mode) {
	s := listen(t, qemu.Config{MTU: 1500})
	cases := []struct {
		name string
		send []byte
	}{
		{"length 0", []byte{0, 0, 0, 0, 1, 2, 3}},
		{"length over MTU", framed(frameN(0, 1500+22+1))},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"cut off", framed(frameN(0, 100))[:50]},
	}
	for i, c := range cases {
		ch := readAsync(m, s)
		conn := dial(t, s)
		conn.Write(c.send)
		if c.name == "cut off" {
			conn.CloseWrite()
		}
		// The port hangs up on the bad peer...
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("%s: peer not disconnected: %v", c.name, err)
		}
		if st := s.Stats(); st.BadPeers != uint64(i+1) {
			t.Fatalf("%s: bad peers = %d, want %d", c.name, st.BadPeers, i+1)
		}
		// The switch shows them as the port's backend counters.
		if bc := s.BackendCounters(); bc["bad-peers"] != uint64(i+1) || bc["connections"] != uint64(2*i+1) {
			t.Fatalf("%s: backend counters %v, want bad-peers=%d connections=%d", c.name, bc, i+1, 2*i+1)
		}
		// ...and serves the next one.
		good := dial(t, s)
		good.Write(framed(frameN(7, 60)))
		if r := wait(t, ch); r.err != nil || len(r.frames) != 1 || !bytes.Equal(r.frames[0], frameN(7, 60)) {
			t.Fatalf("%s: next peer's frame: %d frames, %v", c.name, len(r.frames), r.err)
		}
		good.Close()
	}
}

// A peer that stops reading: writes never block, frames are dropped whole,
// and what the peer finally reads is still a well-framed stream.
func TestStreamSlowPeerStaysFramed(t *testing.T) {
	s := listen(t, qemu.Config{})
	ch := readAsync(modes[0], s)
	c := dial(t, s)
	c.Write(framed(frameN(0, 60)))
	wait(t, ch)
	c.SetReadBuffer(4096)
	sent := 0
	start := time.Now()
	for i := range 5000 {
		n, err := s.Write([][]byte{frameN(i, 1000), frameN(i, 1000)}, []int{0, 0})
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("writes to a peer that does not read took seconds: they must not block")
	}
	if sent >= 10000 {
		t.Fatal("no frame was dropped though the peer never read")
	}
	s.Write([][]byte{frameN(99999, 60)}, []int{0}) // may finish a cut frame or be dropped
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	all, _ := io.ReadAll(c)
	for len(all) >= 4 {
		n := int(binary.BigEndian.Uint32(all))
		if n != 1000 && n != 60 || len(all) < 4+n {
			t.Fatalf("stream lost its framing: length %d with %d bytes left", n, len(all))
		}
		all = all[4+n:]
	}
	if len(all) != 0 {
		t.Fatalf("%d stray bytes at the end of the stream", len(all))
	}
}

// Close unblocks a Read waiting for a peer or on one. (A Poller stops
// watching a port before it closes it: TestStreamPollSecondPeerWaits checks
// ReadNow after Close.)
func TestStreamCloseUnblocks(t *testing.T) {
	m := modes[0]
	s := listen(t, qemu.Config{})
	ch := readAsync(m, s) // waiting in accept
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if r := wait(t, ch); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Read in accept after Close: %v", r.err)
	}
	s2 := listen(t, qemu.Config{})
	ch = readAsync(m, s2)
	dial(t, s2)
	time.Sleep(20 * time.Millisecond) // now waiting on the peer
	s2.Close()
	if r := wait(t, ch); !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Read on a peer after Close: %v", r.err)
	}
}

func TestDgram(t *testing.T) { bothModes(t, testDgram) }

func testDgram(t *testing.T, m mode) {
	dir := t.TempDir()
	d, err := qemu.ListenDgram(qemu.Config{Path: filepath.Join(dir, "sw.sock")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	vm, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "vm.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	if n, err := d.Write([][]byte{frameN(0, 60)}, []int{0}); n != 0 || !errors.Is(err, qemu.ErrNotConnected) {
		t.Fatalf("Write before the peer is known = %d, %v", n, err)
	}
	to := &net.UnixAddr{Name: d.Addr(), Net: "unixgram"}
	ch := readAsync(m, d)
	vm.WriteToUnix(frameN(1, 60), to)
	if r := wait(t, ch); r.err != nil || len(r.frames) != 1 || !bytes.Equal(r.frames[0], frameN(1, 60)) {
		t.Fatalf("Read = %d, %v", len(r.frames), r.err)
	}
	if n, err := d.Write([][]byte{frameN(2, 60)}, []int{0}); n != 1 || err != nil {
		t.Fatalf("Write to the learnt peer = %d, %v", n, err)
	}
	buf := make([]byte, 2048)
	vm.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := vm.ReadFromUnix(buf); err != nil || !bytes.Equal(buf[:n], frameN(2, 60)) {
		t.Fatalf("peer got %x, %v", buf[:n], err)
	}
	ch = readAsync(m, d)
	vm.WriteToUnix(frameN(3, 1600), to) // over MTU 1500 + 22
	vm.WriteToUnix(frameN(4, 60), to)
	if r := wait(t, ch); len(r.frames) != 1 || !bytes.Equal(r.frames[0], frameN(4, 60)) || d.Stats().Oversize != 1 {
		t.Fatalf("after an oversize datagram: %d frames, stats %+v", len(r.frames), d.Stats())
	}
	if bc := d.BackendCounters(); bc["oversize"] != 1 || len(bc) != 2 {
		t.Fatalf("backend counters %v, want oversize=1 and connections", bc)
	}
}

func TestStreamZeroAllocs(t *testing.T) { bothModes(t, testStreamZeroAllocs) }

// testStreamZeroAllocs: a batch written and the peer's frames read (by
// Read, or by ReadNow once the PollFD is readable: two frames in one write
// read one at a time, so that the second waits in the decoder and the
// port's eventfd is set and cleared) allocate nothing.
func testStreamZeroAllocs(t *testing.T, m mode) {
	s := listen(t, qemu.Config{})
	ch := readAsync(m, s)
	c := dial(t, s)
	c.Write(framed(frameN(0, 60)))
	wait(t, ch)
	go io.Copy(io.Discard, c)
	out, offs := [][]byte{frameN(1, 60), frameN(2, 60)}, []int{0, 0}
	in := framed(frameN(1, 60), frameN(2, 60))
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	fds := []unix.PollFd{{Fd: int32(s.PollFD()), Events: unix.POLLIN}}
	read := func() int {
		if m.name == "poller" {
			unix.Poll(fds, 1000)
			n, _ := s.ReadNow(bufs, sizes, 0)
			return n
		}
		n, _ := s.Read(bufs, sizes, 0)
		return n
	}
	short := 0
	if allocs := testing.AllocsPerRun(500, func() {
		s.Write(out, offs)
		c.Write(in)
		for range 2 {
			if read() != 1 {
				short++
			}
		}
	}); allocs != 0 {
		t.Fatalf("write + reads allocated %v times (the test's own conn.Write included)", allocs)
	}
	if short > 0 {
		t.Fatalf("%d reads of 501 × 2 returned no frame: the reads measured were not reading", short)
	}
}

// A second QEMU connecting while one is served waits in the backlog: the
// port's PollFD stays quiet (a forwarding thread does not spin on it) until
// the first goes, then the second is served.
func TestStreamPollSecondPeerWaits(t *testing.T) {
	s := listen(t, qemu.Config{})
	poller := modes[1]
	first := dial(t, s)
	first.Write(framed(frameN(1, 60)))
	if r := wait(t, readAsync(poller, s)); r.err != nil || len(r.frames) != 1 {
		t.Fatalf("first peer: %d frames, %v", len(r.frames), r.err)
	}
	second := dial(t, s)
	second.Write(framed(frameN(2, 60)))
	fds := []unix.PollFd{{Fd: int32(s.PollFD()), Events: unix.POLLIN}}
	if k, _ := unix.Poll(fds, 200); k != 0 {
		t.Fatalf("PollFD readable (events %#x) while the second peer waits and the first sent nothing", fds[0].Revents)
	}
	first.Close()
	if r := wait(t, readAsync(poller, s)); r.err != nil || len(r.frames) != 1 || !bytes.Equal(r.frames[0], frameN(2, 60)) {
		t.Fatalf("second peer after the first left: %d frames, %v", len(r.frames), r.err)
	}
	if st := s.Stats(); st.Connections != 2 || st.BadPeers != 0 {
		t.Fatalf("stats %+v, want 2 connections, no bad peer", st)
	}
	s.Close()
	if n, err := s.ReadNow(make([][]byte, 1), make([]int, 1), 0); n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadNow after Close = %d, %v; want net.ErrClosed", n, err)
	}
}

// Frames that one read(2) completed beyond the caller's buffers keep the
// PollFD readable: the socket is drained, but the frames are not lost until
// the peer's next write.
func TestStreamPollFramesLeftOver(t *testing.T) {
	s := listen(t, qemu.Config{})
	c := dial(t, s)
	var sent [][]byte
	for i := range 10 {
		sent = append(sent, frameN(i, 60))
	}
	c.Write(framed(sent...))
	time.Sleep(20 * time.Millisecond) // all of it in the socket: one read(2) takes it
	var got [][]byte
	bufs, sizes := [][]byte{make([]byte, 2048), make([]byte, 2048), make([]byte, 2048)}, make([]int, 3)
	fds := []unix.PollFd{{Fd: int32(s.PollFD()), Events: unix.POLLIN}}
	for len(got) < len(sent) {
		if k, _ := unix.Poll(fds, 1000); k <= 0 {
			t.Fatalf("PollFD not readable with %d of %d frames read", len(got), len(sent))
		}
		n, err := s.ReadNow(bufs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
		}
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if k, _ := unix.Poll(fds, 100); k != 0 {
		t.Fatalf("PollFD still readable (events %#x) with every frame read", fds[0].Revents)
	}
}
