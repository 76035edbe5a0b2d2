package kdp

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/vlan"
)

// A port of the switch under test: its model, and the adapter MAC it has
// (a static entry; with guard, the only source it may send from).
type testPort struct {
	name  string
	vlan  vlan.Port
	mac   frame.MAC
	guard bool
	group uint8 // split-horizon group
	limit int   // MAC limit of its own (0: none)
}

// dataPath is one switch that a test sends frames into and reads frames
// from, port by port: the userspace core (the reference) or the kernel
// data path.
type dataPath interface {
	send(t *testing.T, port string, f []byte)
	// recv returns what reached each port since the last recv, waiting
	// until want[port] frames have arrived at each (or a timeout) and a
	// little longer for frames that should not come.
	recv(t *testing.T, want map[string]int) map[string][][]byte
	counters(t *testing.T, port string) Counters
	// setPort changes a port's model (and forgets what it learned).
	setPort(t *testing.T, p testPort)
}

// reference is the userspace core with in-memory ports.
type reference struct {
	sw    *l2.Switch
	peers map[string]*mem.Port
}

func newReference(t *testing.T, ports []testPort) *reference {
	return newReferenceWith(t, ports, l2.Options{})
}

// newReferenceWith is newReference with options (name, default VLAN and
// logger are the test's).
func newReferenceWith(t *testing.T, ports []testPort, o l2.Options) *reference {
	o.Name, o.DefaultVLAN, o.Logger = "ref", 1, slog.New(slog.DiscardHandler)
	sw, err := l2.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	r := &reference{sw: sw, peers: map[string]*mem.Port{}}
	for _, p := range ports {
		end, peer := mem.NewPair(mem.Config{})
		if err := sw.AddPort(p.name, end, l2.PortConfig{VLAN: p.vlan, MAC: p.mac, SpoofGuard: p.guard, Group: p.group, MACLimit: p.limit}); err != nil {
			t.Fatal(err)
		}
		r.peers[p.name] = peer
	}
	return r
}

func (r *reference) send(t *testing.T, port string, f []byte) {
	before, _ := r.sw.Counters(port)
	if n, err := r.peers[port].Write([][]byte{f}, []int{0}); n != 1 || err != nil {
		t.Fatalf("reference: write into %s: %v", port, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		if c, _ := r.sw.Counters(port); c.RxPackets > before.RxPackets {
			return // decided and written out
		}
		if time.Now().After(deadline) {
			t.Fatalf("reference: the switch did not read from %s", port)
		}
	}
}

func (r *reference) recv(t *testing.T, _ map[string]int) map[string][][]byte {
	out := map[string][][]byte{}
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	for name, p := range r.peers {
		for p.Queued() > 0 {
			if n, err := p.Read(bufs, sizes, 0); err != nil || n != 1 {
				t.Fatalf("reference: read %s: %v", name, err)
			}
			out[name] = append(out[name], append([]byte(nil), bufs[0][:sizes[0]]...))
		}
	}
	return out
}

func (r *reference) setPort(t *testing.T, p testPort) {
	if err := r.sw.SetPort(p.name, l2.PortConfig{VLAN: p.vlan, MAC: p.mac, SpoofGuard: p.guard, Group: p.group, MACLimit: p.limit}); err != nil {
		t.Fatal(err)
	}
}

func (r *reference) counters(t *testing.T, port string) Counters {
	c, err := r.sw.Counters(port)
	if err != nil {
		t.Fatal(err)
	}
	k := Counters{RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets, TxBytes: c.TxBytes, Floods: c.Floods,
		LearnRefused: c.LearnRefused, Moves: c.Moves}
	copy(k.Drops[:], c.Drops[:])
	return k
}

// kernel is the kernel data path on veths: each port's workload end in a
// namespace of its own, where a raw socket sends and captures frames.
type kernel struct {
	dp   *Datapath
	ns   string
	raws map[string]*netnstest.Raw
	cfgs map[string]PortConfig // by interface
}

func newKernel(t *testing.T, ports []testPort) *kernel {
	return newKernelWith(t, ports, Options{FDBSize: 4096})
}

// newKernelWith is newKernel with options (the namespace is the test's).
func newKernelWith(t *testing.T, ports []testPort, o Options) *kernel {
	netnstest.RequireRoot(t)
	host := netnstest.New(t)
	host.NoIPv6(t)
	o.Namespace = host.Name
	dp, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	if err := dp.SetSwitch("sw", 0, 0); err != nil {
		t.Fatal(err)
	}
	k := &kernel{dp: dp, ns: host.Name, raws: map[string]*netnstest.Raw{}, cfgs: map[string]PortConfig{}}
	for _, p := range ports {
		wl := netnstest.New(t)
		wl.NoIPv6(t)
		netnstest.Veth(t, wl, "eth0", host, "p-"+p.name)
		cfg := PortConfig{Switch: "sw", VLAN: p.vlan, MAC: p.mac, SpoofGuard: p.guard, Group: p.group, MACLimit: p.limit}
		if err := dp.AddPort("p-"+p.name, cfg); err != nil {
			t.Fatal(err)
		}
		k.cfgs["p-"+p.name] = cfg
		k.raws[p.name] = wl.Raw(t, "eth0")
	}
	return k
}

func (k *kernel) send(t *testing.T, port string, f []byte) { k.raws[port].Send(t, f) }

func (k *kernel) recv(t *testing.T, want map[string]int) map[string][][]byte {
	out := map[string][][]byte{}
	for name, r := range k.raws {
		for range want[name] {
			f := r.Recv(2 * time.Second)
			if f == nil {
				break
			}
			out[name] = append(out[name], f)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, r := range k.raws { // what should not have come, on every port at once
		wg.Go(func() {
			extra := r.RecvAll(15 * time.Millisecond)
			mu.Lock()
			out[name] = append(out[name], extra...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (k *kernel) setPort(t *testing.T, p testPort) {
	cfg := PortConfig{Switch: "sw", VLAN: p.vlan, MAC: p.mac, SpoofGuard: p.guard, Group: p.group, MACLimit: p.limit}
	if err := k.dp.SetPort("p-"+p.name, cfg); err != nil {
		t.Fatal(err)
	}
	k.cfgs["p-"+p.name] = cfg
}

func (k *kernel) counters(t *testing.T, port string) Counters {
	c, err := k.dp.Counters("p-" + port)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustVLAN(p vlan.Port, err error) vlan.Port {
	if err != nil {
		panic(err)
	}
	return p
}

func stationMAC(i byte) frame.MAC { return frame.MAC{0x02, 0x56, 0x53, 0x77, 0, i} }

// testFrame builds a 64-byte frame (66 tagged): tpid 0 for none, else a
// tag of that TPID with pcp 5 and vid; the payload starts with id.
func testFrame(dst, src frame.MAC, tpid uint16, vid frame.VID, id uint32) []byte {
	b := append(append([]byte(nil), dst[:]...), src[:]...)
	if tpid != 0 {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(frame.MakeTCI(5, false, vid)))
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, make([]byte, 44)...)
}

// step is one frame into one port.
type step struct {
	name string
	from string
	f    []byte
}

// TestSameAsTheCore sends every kind of frame into every port mode of a
// switch, then known unicast, moves, static and spoofed sources, reserved
// and invalid addresses, through the userspace core and through the
// kernel data path, and checks that every port receives the same frames
// (bytes, tags and all) and that every counter agrees.
func TestSameAsTheCore(t *testing.T) {
	set := frame.MustParseVLANSet
	guarded := stationMAC(0xaa)
	ports := []testPort{
		{name: "u", vlan: mustVLAN(vlan.Untagged(1))},
		{name: "a10", vlan: mustVLAN(vlan.Access(10))},
		{name: "t5", vlan: mustVLAN(vlan.Trunk(set("10,20"), 5))},
		{name: "tn", vlan: mustVLAN(vlan.Trunk(set("10,20"), 0))},
		{name: "h", vlan: mustVLAN(vlan.Hybrid(10, set("10,20"), set("30")))},
		{name: "all", vlan: mustVLAN(vlan.Trunk(set("1-4094"), 0))},
		{name: "g", vlan: mustVLAN(vlan.Access(10)), mac: guarded, guard: true},
	}
	var steps []step
	id := uint32(0)
	add := func(name, from string, f []byte) { steps = append(steps, step{name, from, f}) }
	kinds := []struct {
		name string
		tpid uint16
		vid  frame.VID
	}{
		{"untagged", 0, 0}, {"priority", frame.TPID8021Q, 0}, {"tagged5", frame.TPID8021Q, 5}, {"tagged10", frame.TPID8021Q, 10},
		{"tagged20", frame.TPID8021Q, 20}, {"tagged30", frame.TPID8021Q, 30}, {"tagged40", frame.TPID8021Q, 40},
		{"tagged4095", frame.TPID8021Q, 4095}, {"s-tag10", 0x88a8, 10},
	}
	for i, p := range ports {
		src := stationMAC(byte(i + 1))
		if p.guard {
			src = guarded
		}
		for _, k := range kinds {
			id++
			add(p.name+"/broadcast/"+k.name, p.name, testFrame(frame.Broadcast, src, k.tpid, k.vid, id))
		}
	}
	// Known unicast: every station was learned above, in its port's VLAN.
	for i, p := range ports {
		for j, q := range ports {
			if i == j {
				continue
			}
			dst := stationMAC(byte(j + 1))
			if q.guard {
				dst = guarded
			}
			src := stationMAC(byte(i + 1))
			if p.guard {
				src = guarded
			}
			id++
			add(fmt.Sprintf("%s/unicast-to-%s/untagged", p.name, q.name), p.name, testFrame(dst, src, 0, 0, id))
			id++
			add(fmt.Sprintf("%s/unicast-to-%s/tagged10", p.name, q.name), p.name, testFrame(dst, src, frame.TPID8021Q, 10, id))
		}
	}
	id++
	add("a10/to-itself", "a10", testFrame(stationMAC(2), stationMAC(2), 0, 0, id))
	id++
	add("h/moves-a10's-station", "h", testFrame(frame.Broadcast, stationMAC(2), 0, 0, id))
	id++
	add("u/unicast-to-the-moved-station", "u", testFrame(stationMAC(2), stationMAC(1), 0, 0, id))
	id++
	add("a10/takes-the-guarded-MAC", "a10", testFrame(frame.Broadcast, guarded, 0, 0, id))
	id++
	add("g/spoofed", "g", testFrame(frame.Broadcast, stationMAC(0x99), 0, 0, id))
	id++
	add("h/multicast-source", "h", testFrame(frame.Broadcast, frame.MAC{0x03, 0, 0, 0, 0, 1}, 0, 0, id))
	id++
	add("h/zero-source", "h", testFrame(frame.Broadcast, frame.MAC{}, 0, 0, id))
	id++
	add("h/STP", "h", testFrame(frame.MAC{0x01, 0x80, 0xc2, 0, 0, 0}, stationMAC(5), 0, 0, id))
	id++
	add("h/LLDP", "h", testFrame(frame.MAC{0x01, 0x80, 0xc2, 0, 0, 0x0e}, stationMAC(5), 0, 0, id))
	id++
	add("h/multicast", "h", testFrame(frame.MAC{0x01, 0, 0x5e, 0, 0, 1}, stationMAC(5), 0, 0, id))
	id++
	add("all/unknown-unicast-vlan30", "all", testFrame(stationMAC(0x55), stationMAC(6), frame.TPID8021Q, 30, id))

	ref, kern := newReference(t, ports), newKernel(t, ports)
	for _, s := range steps {
		ref.send(t, s.from, s.f)
		want := ref.recv(t, nil)
		n := map[string]int{}
		for p, fs := range want {
			n[p] = len(fs)
		}
		kern.send(t, s.from, s.f)
		got := kern.recv(t, n)
		if a, b := render(want), render(got); a != b {
			t.Errorf("%s: the kernel data path delivered\n%s\nthe core\n%s", s.name, b, a)
		}
	}
	for _, p := range ports {
		if a, b := ref.counters(t, p.name), kern.counters(t, p.name); a != b {
			t.Errorf("port %s counters: kernel %+v\ncore %+v", p.name, b, a)
		}
	}
}

// render lists what each port received, one line per frame, sorted.
func render(m map[string][][]byte) string {
	var lines []string
	for p, fs := range m {
		for _, f := range fs {
			lines = append(lines, p+" "+hex.EncodeToString(f))
		}
	}
	slices.Sort(lines)
	if len(lines) == 0 {
		return "  (nothing)"
	}
	return "  " + strings.Join(lines, "\n  ")
}

// The MAC table shows what the program learned and the adapters' static
// entries; removing a port takes its entries and its program away, and
// closing the data path leaves no program on any port.
func TestTableAndDetach(t *testing.T) {
	adapter := stationMAC(0xa1)
	ports := []testPort{
		{name: "a", vlan: mustVLAN(vlan.Access(10)), mac: adapter, guard: true},
		{name: "b", vlan: mustVLAN(vlan.Access(10))},
		{name: "c", vlan: mustVLAN(vlan.Access(10))},
	}
	k := newKernel(t, ports)
	k.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xb1), 0, 0, 1))
	if got := k.recv(t, map[string]int{"a": 1, "c": 1}); len(got["a"]) != 1 || len(got["c"]) != 1 {
		t.Fatalf("broadcast from b: %s", render(got))
	}
	table := func() string {
		es, err := k.dp.MACTable("sw")
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, e := range es {
			lines = append(lines, fmt.Sprintf("%d %s %s static=%v", e.VID, e.MAC, e.Port, e.Static))
		}
		return strings.Join(lines, "\n")
	}
	if got, want := table(), "0 02:56:53:77:00:a1 p-a static=true\n10 02:56:53:77:00:b1 p-b static=false"; got != want {
		t.Fatalf("MAC table:\n%s\nwant\n%s", got, want)
	}
	attached := func(name string) int { return k.attached(t, name) }
	if n := attached("p-b"); n != 1 {
		t.Fatalf("%d programs on p-b, want 1", n)
	}
	if err := k.dp.RemovePort("p-b"); err != nil {
		t.Fatal(err)
	}
	if got, want := table(), "0 02:56:53:77:00:a1 p-a static=true"; got != want {
		t.Fatalf("MAC table after b went:\n%s\nwant\n%s", got, want)
	}
	if n := attached("p-b"); n != 0 {
		t.Fatalf("%d programs left on p-b after RemovePort", n)
	}
	k.send(t, "c", testFrame(frame.Broadcast, stationMAC(0xc1), 0, 0, 2))
	if got := k.recv(t, map[string]int{"a": 1}); len(got["a"]) != 1 || len(got["b"]) != 0 {
		t.Fatalf("broadcast from c after b went: %s", render(got))
	}
	if err := k.dp.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p-a", "p-c"} {
		if n := attached(p); n != 0 {
			t.Fatalf("%d programs left on %s after Close", n, p)
		}
	}
}

// attached is the number of programs at tcx ingress of an interface.
func (k *kernel) attached(t *testing.T, name string) int {
	t.Helper()
	var n int
	err := nsrun.In(nsrun.Path(k.ns), func() error {
		i, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		r, err := link.QueryPrograms(link.QueryOptions{Target: i.Index, Attach: ebpf.AttachTCXIngress})
		if err == nil {
			n = len(r.Programs)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// bpffs mounts a BPF filesystem on a new directory for the test.
func bpffs(t *testing.T) string {
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount a BPF filesystem: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// With its maps and links pinned, the data path forwards while no process
// holds it, and the next Open takes over its switches, ports, counters and
// MAC table without detaching anything; when the last switch goes, no pin
// and no program is left.
func TestPinnedDatapathOutlivesItsProcess(t *testing.T) {
	pins := filepath.Join(bpffs(t), "vswitch")
	ports := []testPort{
		{name: "a", vlan: mustVLAN(vlan.Access(10)), mac: stationMAC(0xa1), guard: true},
		{name: "b", vlan: mustVLAN(vlan.Access(10))},
	}
	k := newKernelWith(t, ports, Options{FDBSize: 4096, PinDir: pins})
	k.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xb1), 0, 0, 1))
	if got := k.recv(t, map[string]int{"a": 1}); len(got["a"]) != 1 {
		t.Fatalf("before: %s", render(got))
	}
	if err := k.dp.Close(); err != nil {
		t.Fatal(err)
	}
	// Nobody holds the data path: it forwards all the same (known unicast now).
	k.send(t, "a", testFrame(stationMAC(0xb1), stationMAC(0xa1), 0, 0, 2))
	if got := k.recv(t, map[string]int{"b": 1}); len(got["b"]) != 1 {
		t.Fatalf("while closed: %s", render(got))
	}
	dp, err := Open(Options{Namespace: k.ns, FDBSize: 4096, PinDir: pins})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	k.dp = dp
	if c, err := dp.Counters("p-a"); err != nil || c.RxPackets != 1 || c.TxPackets != 1 {
		t.Fatalf("counters taken over: %+v, %v; want 1 frame in and 1 out", c, err)
	}
	es, err := dp.MACTable("sw")
	if err != nil || len(es) != 2 {
		t.Fatalf("MAC table taken over: %+v, %v", es, err)
	}
	for name, cfg := range k.cfgs {
		if err := dp.AddPort(name, cfg); err != nil {
			t.Fatal(err)
		}
		if n := k.attached(t, name); n != 1 {
			t.Fatalf("%d programs on %s after it was taken over, want 1", n, name)
		}
	}
	if err := dp.Prune(nil, nil); err != nil {
		t.Fatal(err)
	}
	for name := range k.cfgs {
		if n := k.attached(t, name); n != 0 {
			t.Fatalf("%d programs left on %s", n, name)
		}
	}
	if left, _ := os.ReadDir(pins); len(left) != 0 {
		t.Fatalf("pins left: %v", left)
	}
}

// A static MAC stays its port's when a flood of new sources fills the
// learned table (they are kept apart): no other port takes it, and frames
// to it still reach only its port.
func TestStaticSurvivesAFullTable(t *testing.T) {
	adapter := stationMAC(0xa1)
	ports := []testPort{
		{name: "a", vlan: mustVLAN(vlan.Access(10)), mac: adapter, guard: true},
		{name: "b", vlan: mustVLAN(vlan.Access(10))},
		{name: "c", vlan: mustVLAN(vlan.Access(10))},
	}
	k := newKernelWith(t, ports, Options{FDBSize: 64})
	for i := range 500 { // ten times what the table holds
		k.send(t, "b", testFrame(frame.Broadcast, frame.MAC{2, 0x77, 0, 0, byte(i >> 8), byte(i)}, 0, 0, uint32(i)))
	}
	k.recv(t, map[string]int{"a": 500, "c": 500})
	k.send(t, "b", testFrame(frame.Broadcast, adapter, 0, 0, 1000)) // b claims a's MAC
	k.recv(t, map[string]int{"a": 1, "c": 1})
	k.send(t, "c", testFrame(adapter, stationMAC(0xc1), 0, 0, 1001))
	if got := k.recv(t, map[string]int{"a": 1}); len(got["a"]) != 1 || len(got["b"]) != 0 {
		t.Fatalf("unicast to a's MAC after the flood: %s", render(got))
	}
	if c := k.counters(t, "b"); c.LearnRefused != 500-64+1 {
		t.Fatalf("b's learn refused = %d, want %d (436 past the full table, as the core refuses them, and a's static MAC)", c.LearnRefused, 500-64+1)
	}
}

// TestManyPorts: a switch of 130 ports (more than twice the 64 the flood
// loop once took) floods a broadcast to every other port exactly once and
// sends known unicast to its one port, with counters to match.
func TestManyPorts(t *testing.T) {
	netnstest.RequireRoot(t)
	const n = 130
	host, wl := netnstest.New(t), netnstest.New(t)
	host.NoIPv6(t)
	wl.NoIPv6(t)
	dp, err := Open(Options{Namespace: host.Name, FDBSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	if err := dp.SetSwitch("big", 0, 0); err != nil {
		t.Fatal(err)
	}
	untagged := mustVLAN(vlan.Untagged(1))
	raws := make([]*netnstest.Raw, n)
	for i := range n {
		netnstest.Veth(t, wl, fmt.Sprint("w", i), host, fmt.Sprint("p", i))
		if err := dp.AddPort(fmt.Sprint("p", i), PortConfig{Switch: "big", VLAN: untagged}); err != nil {
			t.Fatal(err)
		}
		raws[i] = wl.Raw(t, fmt.Sprint("w", i))
	}
	// A broadcast from port 0 reaches every other port, once each.
	raws[0].Send(t, testFrame(frame.Broadcast, stationMAC(0), 0, 0, 1))
	var wg sync.WaitGroup
	got := make([]int, n)
	for i := 1; i < n; i++ {
		wg.Go(func() { got[i] = len(raws[i].RecvAll(300 * time.Millisecond)) })
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if got[i] != 1 {
			t.Fatalf("port %d received %d copies of the broadcast, want 1", i, got[i])
		}
	}
	if c, _ := dp.Counters("p0"); c.Floods != 1 {
		t.Fatalf("port 0 floods %d, want 1", c.Floods)
	}
	tx := 0
	for i := 1; i < n; i++ {
		c, _ := dp.Counters(fmt.Sprint("p", i))
		tx += int(c.TxPackets)
	}
	if tx != n-1 {
		t.Fatalf("%d frames counted as sent, want %d", tx, n-1)
	}
	// Port 0 is learned: a frame to it from the last port reaches it alone.
	raws[n-1].Send(t, testFrame(stationMAC(0), stationMAC(99), 0, 0, 2))
	if f := raws[0].Recv(2 * time.Second); f == nil {
		t.Fatal("known unicast from the last port did not reach port 0")
	}
	if extra := raws[1].RecvAll(100 * time.Millisecond); len(extra) != 0 {
		t.Fatalf("known unicast was flooded: port 1 got %d frames", len(extra))
	}
}

// TestMovesReported: a station seen on another port is reported with
// its switch, VLAN, MAC and both ports, as the core reports it.
func TestMovesReported(t *testing.T) {
	moves := make(chan Move, 8)
	access := mustVLAN(vlan.Access(10))
	k := newKernelWith(t, []testPort{{name: "a", vlan: access}, {name: "b", vlan: access}},
		Options{FDBSize: 4096, OnMove: func(m Move) { moves <- m }})
	station := stationMAC(7)
	k.send(t, "a", testFrame(frame.Broadcast, station, 0, 0, 1))
	k.send(t, "b", testFrame(frame.Broadcast, station, 0, 0, 2))
	select {
	case m := <-moves:
		if want := (Move{Switch: "sw", MAC: station, VID: 10, From: "p-a", To: "p-b"}); m != want {
			t.Fatalf("move reported as %+v, want %+v", m, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no move reported")
	}
	if c := k.counters(t, "b"); c.Moves != 1 {
		t.Fatalf("port b counts %d moves, want 1", c.Moves)
	}
}

// TestRandomSameAsTheCore is the isolation property on the kernel path:
// random port models (untagged, access, trunk with or without a native
// VLAN, hybrid) over a few VLANs, some ports in one split-horizon group,
// some with a MAC limit of their own, then random frames (stations that move,
// known, unknown and broadcast destinations, untagged, priority-tagged,
// tagged with member and non-member VLANs, VID 4095) into random ports,
// through the core and the program: every port must receive the same
// bytes after every frame, and every counter agree at the end.
// VSWITCH_SEED replays a run.
func TestRandomSameAsTheCore(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VSWITCH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (VSWITCH_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	vids := func() frame.VLANSet {
		var s frame.VLANSet
		for v := frame.VID(1); v <= 4; v++ {
			if rng.IntN(2) == 0 {
				s.Add(v)
			}
		}
		return s
	}
	model := func() vlan.Port {
		for {
			var p vlan.Port
			var err error
			switch rng.IntN(4) {
			case 0:
				p, err = vlan.Untagged(1)
			case 1:
				p, err = vlan.Access(frame.VID(1 + rng.IntN(4)))
			case 2:
				p, err = vlan.Trunk(vids(), frame.VID(rng.IntN(5)))
			default:
				u, tg := vids(), vids()
				tg = tg.Difference(&u)
				p, err = vlan.Hybrid(frame.VID(1+rng.IntN(4)), u, tg)
			}
			if err == nil {
				return p
			}
		}
	}
	var ports []testPort
	for i := range 6 {
		ports = append(ports, testPort{name: fmt.Sprint("r", i), vlan: model(), group: uint8(rng.IntN(3) / 2), limit: max(rng.IntN(6)-2, 0)})
	}
	for _, p := range ports {
		t.Logf("port %s: %s, group %d, MAC limit %d", p.name, p.vlan, p.group, p.limit)
	}
	ref, kern := newReference(t, ports), newKernel(t, ports)
	for n := range 250 {
		from := ports[rng.IntN(len(ports))].name
		src := stationMAC(byte(1 + rng.IntN(8)))
		var dst frame.MAC
		switch rng.IntN(3) {
		case 0:
			dst = frame.Broadcast
		default:
			dst = stationMAC(byte(1 + rng.IntN(10))) // 9 and 10 are never sources: unknown
		}
		var tpid uint16
		var vid frame.VID
		switch k := rng.IntN(8); {
		case k < 3: // untagged
		case k == 3:
			tpid = frame.TPID8021Q // priority-tagged
		case k == 4:
			tpid, vid = frame.TPID8021Q, 4095
		default:
			tpid, vid = frame.TPID8021Q, frame.VID(1+rng.IntN(5))
		}
		f := testFrame(dst, src, tpid, vid, uint32(n))
		ref.send(t, from, f)
		want := ref.recv(t, nil)
		counts := map[string]int{}
		for p, fs := range want {
			counts[p] = len(fs)
		}
		kern.send(t, from, f)
		got := kern.recv(t, counts)
		if a, b := render(want), render(got); a != b {
			t.Fatalf("frame %d (from %s, %s → %s, tpid %#x vid %d): the kernel data path delivered\n%s\nthe core\n%s", n, from, src, dst, tpid, vid, b, a)
		}
	}
	for _, p := range ports {
		if a, b := ref.counters(t, p.name), kern.counters(t, p.name); a != b {
			t.Errorf("port %s counters: kernel %+v\ncore %+v", p.name, b, a)
		}
	}
}

// TestTableBound: a switch learns at most its table size of stations, on
// both data paths alike: the next new sources are refused (counted on
// their port) and frames to them flooded, while known ones stay unicast.
// On the kernel path the aged entries are swept (periodically, and within
// a second of a full switch refusing a station): new stations are
// learned again.
func TestTableBound(t *testing.T) {
	ports := []testPort{
		{name: "a", vlan: mustVLAN(vlan.Access(10))},
		{name: "b", vlan: mustVLAN(vlan.Access(10))},
		{name: "c", vlan: mustVLAN(vlan.Access(10))},
	}
	k := newKernel(t, ports)
	if err := k.dp.SetSwitch("sw", time.Second, 4); err != nil {
		t.Fatal(err)
	}
	paths := map[string]dataPath{"core": newReferenceWith(t, ports, l2.Options{FDBSize: 4, Ageing: time.Second}), "kernel": k}
	for name, dp := range paths {
		for i := range 6 {
			dp.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xb0+byte(i)), 0, 0, uint32(i)))
		}
		if got := dp.recv(t, map[string]int{"a": 6, "c": 6}); len(got["a"]) != 6 || len(got["c"]) != 6 {
			t.Fatalf("%s: six broadcasts from b: %s", name, render(got))
		}
		if c := dp.counters(t, "b"); c.LearnRefused != 2 {
			t.Fatalf("%s: b's learn refused = %d, want 2 (a table of 4)", name, c.LearnRefused)
		}
		dp.send(t, "c", testFrame(stationMAC(0xb5), stationMAC(0xc1), 0, 0, 10)) // never learned: flooded
		if got := dp.recv(t, map[string]int{"a": 1, "b": 1}); len(got["a"]) != 1 || len(got["b"]) != 1 {
			t.Fatalf("%s: unicast to a refused station: %s", name, render(got))
		}
		dp.send(t, "a", testFrame(stationMAC(0xb0), stationMAC(0xa1), 0, 0, 11)) // learned: to b only
		if got := dp.recv(t, map[string]int{"b": 1}); len(got["b"]) != 1 || len(got["c"]) != 0 {
			t.Fatalf("%s: unicast to a learned station: %s", name, render(got))
		}
	}
	if es, _ := k.dp.MACTable("sw"); len(es) != 4 {
		t.Fatalf("kernel MAC table holds %d entries, want 4", len(es))
	}
	time.Sleep(1100 * time.Millisecond) // every entry aged out, still in the table
	k.waitLearned(t, "b", func(es []Entry) bool { return len(es) == 1 }, "a full switch's entries aged out")
}

// waitLearned sends broadcasts from a new station on port until the MAC
// table has it there and ok(table) holds, for at most 3 s: aged entries
// must be swept to make room for it (after is what made them age).
func (k *kernel) waitLearned(t *testing.T, port string, ok func([]Entry) bool, after string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		k.send(t, port, testFrame(frame.Broadcast, stationMAC(0xbf), 0, 0, 20))
		k.recv(t, nil)
		es, _ := k.dp.MACTable("sw")
		if slices.ContainsFunc(es, func(e Entry) bool { return e.MAC == stationMAC(0xbf) && e.Port == "p-"+port }) && ok(es) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no station learned on %s 3 s after %s: not swept", port, after)
		}
	}
}

// TestPortLimit: a port learns at most its own limit of stations, on both
// data paths alike: the next new source is refused (counted, its frames
// still forwarded, frames to it flooded), and a station moving onto the
// full port stays where it was learned; other ports learn as before. On
// the kernel path the port's aged entries, once swept, give their places
// to new stations.
func TestPortLimit(t *testing.T) {
	ports := []testPort{
		{name: "a", vlan: mustVLAN(vlan.Access(10))},
		{name: "b", vlan: mustVLAN(vlan.Access(10)), limit: 2},
		{name: "c", vlan: mustVLAN(vlan.Access(10))},
	}
	k := newKernel(t, ports)
	if err := k.dp.SetSwitch("sw", time.Second, 0); err != nil {
		t.Fatal(err)
	}
	paths := map[string]dataPath{"core": newReferenceWith(t, ports, l2.Options{Ageing: time.Second}), "kernel": k}
	for name, dp := range paths {
		for i := range 3 {
			dp.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xb0+byte(i)), 0, 0, uint32(i)))
		}
		if got := dp.recv(t, map[string]int{"a": 3, "c": 3}); len(got["a"]) != 3 || len(got["c"]) != 3 {
			t.Fatalf("%s: three broadcasts from b: %s", name, render(got))
		}
		dp.send(t, "c", testFrame(frame.Broadcast, stationMAC(0xc1), 0, 0, 3))
		dp.recv(t, map[string]int{"a": 1, "b": 1})
		dp.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xc1), 0, 0, 4)) // c's station, onto the full port
		dp.recv(t, map[string]int{"a": 1, "c": 1})
		if c := dp.counters(t, "b"); c.LearnRefused != 2 || c.Moves != 0 {
			t.Fatalf("%s: b's learn refused = %d, moves = %d; want 2 and 0 (a limit of 2)", name, c.LearnRefused, c.Moves)
		}
		if c := dp.counters(t, "c"); c.LearnRefused != 0 {
			t.Fatalf("%s: c's learn refused = %d, want 0", name, c.LearnRefused)
		}
		dp.send(t, "a", testFrame(stationMAC(0xb2), stationMAC(0xa1), 0, 0, 5)) // refused: flooded
		if got := dp.recv(t, map[string]int{"b": 1, "c": 1}); len(got["b"]) != 1 || len(got["c"]) != 1 {
			t.Fatalf("%s: unicast to a refused station: %s", name, render(got))
		}
		dp.send(t, "a", testFrame(stationMAC(0xc1), stationMAC(0xa1), 0, 0, 6)) // still c's
		if got := dp.recv(t, map[string]int{"c": 1}); len(got["c"]) != 1 || len(got["b"]) != 0 {
			t.Fatalf("%s: unicast to the station that could not move: %s", name, render(got))
		}
		// A changed port forgets what it learned: its stations are
		// unknown (flooded), and it learns up to its new limit afresh.
		dp.setPort(t, testPort{name: "b", vlan: mustVLAN(vlan.Access(10)), limit: 1})
		dp.send(t, "a", testFrame(stationMAC(0xb0), stationMAC(0xa1), 0, 0, 7))
		if got := dp.recv(t, map[string]int{"b": 1, "c": 1}); len(got["b"]) != 1 || len(got["c"]) != 1 {
			t.Fatalf("%s: unicast to a station of a port that changed: %s", name, render(got))
		}
		for i := range 2 {
			dp.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xb0+byte(i)), 0, 0, uint32(8+i)))
			dp.recv(t, map[string]int{"a": 1, "c": 1})
		}
		if c := dp.counters(t, "b"); c.LearnRefused != 3 {
			t.Fatalf("%s: b's learn refused = %d, want 3 (one more past its new limit of 1)", name, c.LearnRefused)
		}
	}
	time.Sleep(1100 * time.Millisecond) // b's entries aged out, still counted until swept
	k.waitLearned(t, "b", func([]Entry) bool { return true }, "its entries aged out")
}

// TestSweptOnTime: a switch whose ageing is shortened has its aged entries
// swept on its own schedule (an eighth of its ageing, at least every
// second), not at the schedule the sweeper had before it.
func TestSweptOnTime(t *testing.T) {
	ports := []testPort{{name: "a", vlan: mustVLAN(vlan.Access(10))}, {name: "b", vlan: mustVLAN(vlan.Access(10))}}
	k := newKernel(t, ports) // its switch ages after 300 s: the sweeper waits 30 s
	if err := k.dp.SetSwitch("sw", time.Second, 0); err != nil {
		t.Fatal(err)
	}
	k.send(t, "a", testFrame(frame.Broadcast, stationMAC(0xa1), 0, 0, 1))
	k.recv(t, map[string]int{"b": 1})
	deadline := time.Now().Add(4 * time.Second) // aged after 1 s, swept within 1 s more
	for {
		n := 0
		eachEntry(k.dp.objs.Fdb, func(*kdpFdbKey, *kdpFdbVal) { n++ })
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left 4 s after they were learned on a switch that ages them after 1 s", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An entry is aged only if it was last seen ageing or longer before now;
// one seen after now was read (the program refreshed it meanwhile) is not.
func TestAged(t *testing.T) {
	for _, tc := range []struct {
		seen, now, ageing uint64
		want              bool
	}{{0, 10, 10, true}, {5, 10, 10, false}, {100, 50, 10, false}, {10, 10, 0, true}} {
		if got := aged(&kdpFdbVal{Seen: tc.seen}, tc.now, tc.ageing); got != tc.want {
			t.Errorf("seen %d, now %d, ageing %d: aged = %v", tc.seen, tc.now, tc.ageing, got)
		}
	}
}

// TestClsact: where the program is a clsact filter (a kernel without tcx,
// or Options.Clsact), it forwards as on tcx; a pinned data path moves
// between tcx and clsact when the next process asks for the other, with
// no second copy of the program left on a port; a clsact filter is
// replaced in place by the next process's program; and no filter and no
// qdisc is left behind a removed port or a closed unpinned data path.
func TestClsact(t *testing.T) {
	pins := filepath.Join(bpffs(t), "vswitch")
	ports := []testPort{
		{name: "a", vlan: mustVLAN(vlan.Access(10)), mac: stationMAC(0xa1), guard: true},
		{name: "b", vlan: mustVLAN(vlan.Access(10))},
		{name: "c", vlan: mustVLAN(vlan.Access(20))},
	}
	k := newKernelWith(t, ports, Options{FDBSize: 4096, PinDir: pins}) // on tcx first
	filters := func(name string) (ours, qdiscs int) {
		t.Helper()
		h, err := nsrun.Netlink(nsrun.Path(k.ns))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		fs, _ := h.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		for _, f := range fs {
			if f.Attrs().Priority == clsactPriority {
				ours++
			}
		}
		qs, _ := h.QdiscList(l)
		for _, q := range qs {
			if q.Type() == "clsact" {
				qdiscs++
			}
		}
		return ours, qdiscs
	}
	forwards := func(when string) {
		t.Helper()
		k.send(t, "b", testFrame(frame.Broadcast, stationMAC(0xb1), 0, 0, 1))
		if got := k.recv(t, map[string]int{"a": 1}); len(got["a"]) != 1 || len(got["c"]) != 0 {
			t.Fatalf("%s: a broadcast in VLAN 10: %s", when, render(got))
		}
		k.send(t, "a", testFrame(stationMAC(0xb1), stationMAC(0xa1), 0, 0, 2))
		if got := k.recv(t, map[string]int{"b": 1}); len(got["b"]) != 1 || len(got["c"]) != 0 {
			t.Fatalf("%s: known unicast: %s", when, render(got))
		}
	}
	attachedAs := func(when string, clsact bool) {
		t.Helper()
		want := [3]int{0, 0, 1} // our filters, clsact qdiscs, tcx programs
		if clsact {
			want = [3]int{1, 1, 0}
		}
		for _, name := range []string{"p-a", "p-b", "p-c"} {
			n, q := filters(name)
			if got := [3]int{n, q, k.attached(t, name)}; got != want {
				t.Fatalf("%s: %s has %d of our clsact filters, %d clsact qdiscs and %d tcx programs; want %v", when, name, n, q, got[2], want)
			}
		}
		forwards(when)
	}
	reopen := func(clsact bool) *Datapath {
		t.Helper()
		if err := k.dp.Close(); err != nil {
			t.Fatal(err)
		}
		forwards("with no process holding it")
		dp, err := Open(Options{Namespace: k.ns, FDBSize: 4096, PinDir: pins, Clsact: clsact})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		k.dp = dp
		for name, cfg := range k.cfgs {
			if err := dp.AddPort(name, cfg); err != nil {
				t.Fatal(err)
			}
		}
		return dp
	}
	attachedAs("on tcx", false)
	reopen(true)
	attachedAs("moved to clsact", true)
	reopen(true)
	attachedAs("clsact taken over (the filter replaced in place)", true)
	reopen(false)
	attachedAs("back on tcx", false)
	dp := reopen(true)
	if err := dp.RemovePort("p-b"); err != nil {
		t.Fatal(err)
	}
	if n, q := filters("p-b"); n != 0 || q != 0 {
		t.Fatalf("p-b keeps %d filters and %d clsact qdiscs after RemovePort", n, q)
	}
	for _, name := range []string{"p-a", "p-c"} {
		if err := dp.RemovePort(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := dp.RemoveSwitch("sw"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(pins); len(entries) != 0 {
		t.Fatalf("pins left after the last switch went: %v", entries)
	}
	// Unpinned, closing the data path takes its filters and qdiscs.
	k = newKernelWith(t, ports[:2], Options{FDBSize: 4096, Clsact: true})
	forwards("unpinned")
	if err := k.dp.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p-a", "p-b"} {
		if n, q := filters(name); n != 0 || q != 0 {
			t.Fatalf("%s keeps %d filters and %d clsact qdiscs after an unpinned Close", name, n, q)
		}
	}
}
