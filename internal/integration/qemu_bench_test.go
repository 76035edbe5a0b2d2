package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/poll"
	"github.com/vswitch/vswitch/internal/port/qemu"
)

// peerEnv makes the test binary the two "VMs" of BenchmarkQEMURoundTrip
// (see TestMain): "stream|dgram,SOCK_A,SOCK_B,N".
const peerEnv = "VSWITCH_BENCH_QEMU_PEERS"

func TestMain(m *testing.M) {
	if spec := os.Getenv(peerEnv); spec != "" {
		if err := qemuPeers(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkQEMURoundTrip: one 60-byte frame from one QEMU socket peer
// (stream or dgram) through the switch to another, and one back; ns/op is
// such a round trip, as the peers time it (without the switch's set-up and
// the peers' start). The peers run in a process of their own with one
// P, as QEMU's single main loop does (in the switch's process the Go
// scheduler would hand a frame from peer to port goroutine without a
// thread wake-up, which QEMU never gets). The ports are read by a
// goroutine each, or by a forwarding thread that sleeps at once or polls
// for 50 µs (vswitchd's default). The host is noisy: compare the modes
// interleaved (one -test.bench run per mode, repeated), not one after
// another.
func BenchmarkQEMURoundTrip(b *testing.B) {
	for _, kind := range []string{"stream", "dgram"} {
		for _, c := range []struct {
			name string
			poll *poll.Config
		}{
			{"goroutines", nil},
			{"thread-sleep", &poll.Config{Threads: 1}},
			{"thread-busy50us", &poll.Config{Threads: 1, BusyPoll: 50 * time.Microsecond}},
		} {
			b.Run(kind+"/"+c.name, func(b *testing.B) { benchQEMURoundTrip(b, kind, c.poll) })
		}
	}
}

func benchQEMURoundTrip(b *testing.B, kind string, pc *poll.Config) {
	o := l2.Options{Name: "bench-qemu"}
	if pc != nil {
		p, err := poll.New(*pc)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		o.Poller = p
	}
	sw := newSwitchWith(b, o)
	var socks []string
	for i := range 2 {
		var s interface {
			l2.Port
			Addr() string
		}
		var err error
		if kind == "dgram" {
			s, err = qemu.ListenDgram(qemu.Config{Path: filepath.Join(b.TempDir(), "vm.sock")})
		} else {
			s, err = qemu.ListenStream(qemu.Config{Path: filepath.Join(b.TempDir(), "vm.sock")})
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := sw.AddPort(string(rune('a'+i)), s, l2.PortConfig{}); err != nil {
			b.Fatal(err)
		}
		socks = append(socks, s.Addr())
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%d", peerEnv, kind, strings.Join(socks, ","), b.N), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("peers: %v", err)
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("peers printed %q", out)
	}
	b.ReportMetric(ns, "ns/op")
}

// qemuPeers connects to two QEMU socket ports as QEMU would and times n
// round trips: a frame from the first peer to the second, then one back.
// It prints the mean nanoseconds per round trip.
func qemuPeers(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 4 {
		return fmt.Errorf("%s=%q: want stream|dgram,SOCK_A,SOCK_B,N", peerEnv, spec)
	}
	dgram, socks := parts[0] == "dgram", parts[1:3]
	n, err := strconv.Atoi(parts[3])
	if err != nil {
		return err
	}
	var peers [2]net.Conn
	var frames [2][]byte
	for i := range peers {
		if dgram {
			local := &net.UnixAddr{Name: socks[i] + ".peer", Net: "unixgram"}
			peers[i], err = net.DialUnix("unixgram", local, &net.UnixAddr{Name: socks[i], Net: "unixgram"})
			defer os.Remove(local.Name)
		} else {
			peers[i], err = net.Dial("unix", socks[i])
		}
		if err != nil {
			return err
		}
		defer peers[i].Close()
		// Frame i goes from peer i to peer 1-i.
		frames[i] = streamFrame(vmMAC(byte(2-i)), vmMAC(byte(1+i)))
		if dgram {
			frames[i] = frames[i][4:] // a datagram is a frame: no length in front
		}
	}
	got := make([]byte, len(frames[0]))
	send := func(from int, wait time.Duration) error {
		if _, err := peers[from].Write(frames[from]); err != nil {
			return err
		}
		peers[1-from].SetReadDeadline(time.Now().Add(wait))
		_, err := io.ReadFull(peers[1-from], got)
		return err
	}
	// Until a stream port has accepted its peer, or a dgram port has had
	// a datagram from it, frames to it are dropped: send until both
	// directions arrive (both stations are learnt then), and drop any late
	// copies before timing.
	for i := range peers {
		peers[i].Write(frames[i])
	}
	for _, from := range []int{0, 1} {
		for try := 0; send(from, 100*time.Millisecond) != nil; try++ {
			if try == 50 {
				return fmt.Errorf("no frame from peer %d reached the other in 5 s", from)
			}
		}
	}
	time.Sleep(50 * time.Millisecond)
	for _, p := range peers {
		p.SetReadDeadline(time.Now().Add(time.Millisecond))
		io.Copy(io.Discard, p)
	}
	start := time.Now()
	for range n {
		for _, from := range []int{0, 1} {
			if err := send(from, 5*time.Second); err != nil {
				return fmt.Errorf("peer %d got no frame: %v", 1-from, err)
			}
		}
	}
	fmt.Println(float64(time.Since(start).Nanoseconds()) / float64(n))
	return nil
}
