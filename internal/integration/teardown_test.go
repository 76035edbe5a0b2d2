package integration

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/qemu"
)

// ourGoroutines counts goroutines running code of the switch or a backend.
func ourGoroutines() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "vswitch/internal/l2.") || strings.Contains(g, "vswitch/internal/port/") {
			n++
		}
	}
	return n
}

func hostLinks(t *testing.T) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// openFDs lists the process's open descriptors and what they are.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]string{}
	for _, n := range names {
		if n == strconv.Itoa(int(d.Fd())) {
			continue // the listing's own
		}
		fds[n], _ = os.Readlink("/proc/self/fd/" + n)
	}
	return fds
}

func netnsNames() []string {
	es, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// 5. Building a switch with TAP namespaces, an AF_PACKET uplink and a QEMU
// socket, passing traffic and tearing it all down leaves no namespace,
// link, socket file, goroutine, open descriptor or descriptor watched by
// the forwarding threads behind.
func TestTeardownLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to build namespaces, veths and TAPs")
	}
	fw := forwarders() // the package's, shared by every test: started before counting
	nsBefore, linksBefore, gBefore, watchedBefore := netnsNames(), hostLinks(t), ourGoroutines(), fw.Watched()
	fdsBefore := openFDs(t)
	sock := filepath.Join(t.TempDir(), "vm.sock")
	t.Run("build and use", func(t *testing.T) {
		sw := newSwitch(t, "sw-tear")
		phys, _ := physNet(t, sw, "10.92.0.1/24", l2.PortConfig{})
		vm := addVM(t, sw, "vm", "10.92.0.2/24", l2PortMAC(vmMAC(1)))
		q, err := qemu.ListenStream(qemu.Config{Path: sock})
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.AddPort("qemu", q, l2PortMAC(vmMAC(2))); err != nil {
			t.Fatal(err)
		}
		// A QEMU peer comes, sends a frame and goes: accepted, read and
		// dropped on a forwarding thread, with descriptors of its own.
		peer, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(streamFrame(frame.Broadcast, vmMAC(2))); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for c, _ := sw.Counters("qemu"); c.RxPackets == 0; c, _ = sw.Counters("qemu") {
			if time.Now().After(deadline) {
				t.Fatal("the QEMU peer's frame was not read")
			}
			time.Sleep(10 * time.Millisecond)
		}
		peer.Close()
		mustPing(t, vm.ns, "10.92.0.1")
		tcpTransfer(t, phys, vm.ns, vm.ip, 8<<20)
		if fw.Watched() != watchedBefore+3 {
			t.Fatalf("the forwarding threads watch %d descriptors, want %d more than before (the TAP, the uplink and the QEMU socket)", fw.Watched(), 3)
		}
		if len(added(nsBefore, netnsNames())) == 0 {
			t.Fatal("the build made no namespace: the check below would prove nothing")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for (ourGoroutines() > gBefore || len(openFDs(t)) != len(fdsBefore)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := ourGoroutines(); g > gBefore {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines of the switch or its ports left (was %d):\n%s", g, gBefore, buf[:runtime.Stack(buf, true)])
	}
	if fds := openFDs(t); len(fds) != len(fdsBefore) {
		var diff []string
		for fd, what := range fds {
			if fdsBefore[fd] != what {
				diff = append(diff, fd+" → "+what)
			}
		}
		t.Errorf("%d descriptors open in the process, %d before; new or changed: %v", len(fds), len(fdsBefore), diff)
	}
	if n := fw.Watched(); n != watchedBefore {
		t.Errorf("the forwarding threads still watch %d descriptors (were %d)", n, watchedBefore)
	}
	// What other packages' tests (running at once) made or removed
	// meanwhile is theirs: what must hold is that nothing new is left.
	if left := added(nsBefore, netnsNames()); len(left) > 0 {
		t.Errorf("namespaces left: %v (before %v)", left, nsBefore)
	}
	if left := added(linksBefore, hostLinks(t)); len(left) > 0 {
		t.Errorf("host links left: %v (before %v)", left, linksBefore)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("QEMU socket file %s left behind (%v)", sock, err)
	}
}

// added returns what is in after and not in before.
func added(before, after []string) []string {
	var out []string
	for _, x := range after {
		if !slices.Contains(before, x) {
			out = append(out, x)
		}
	}
	return out
}
