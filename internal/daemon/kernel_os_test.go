package daemon_test

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/apitest"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/store"
)

// A switch on the kernel data path, through the controller on a real
// host: namespaces and the host adapter reach each other through veths
// whose frames the eBPF program switches; VLANs isolate; counters and the
// MAC table are read as for the core; a switch moves between the data
// paths (its namespaces' interfaces made anew); removing it leaves no
// device and no program.
func TestKernelSwitchOnTheHost(t *testing.T) {
	host, a, b := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	for _, ns := range []*netnstest.NS{host, a, b} {
		ns.NoIPv6(t)
	}
	fs := t.TempDir()
	if err := unix.Mount("bpf", fs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(fs, unix.MNT_DETACH) })
	pins := filepath.Join(fs, "vswitch")
	dp, err := kdp.Open(kdp.Options{Namespace: host.Name, PinDir: pins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	st, err := store.Open(filepath.Join(t.TempDir(), "v.db"), &config.Config{Host: config.DefaultHost("t")})
	if err != nil {
		t.Fatal(err)
	}
	be := daemon.OSBackend{Namespace: host.Name}
	start := func() *daemon.Controller {
		c := daemon.NewController(daemon.Deps{Store: st, Backend: be, Host: be, Runner: &apitest.Runner{}, Kernel: dp,
			Log: slog.New(slog.DiscardHandler), RetryEvery: time.Hour})
		if _, err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start()
	t.Cleanup(func() {
		c.Change(func(cfg *config.Config) error { *cfg = config.Config{Host: cfg.Host}; return nil })
		c.Close()
		st.Close()
	})
	macA, macB := [6]byte{2, 0x56, 0x53, 8, 0, 1}, [6]byte{2, 0x56, 0x53, 8, 0, 2}
	state := func(dpath config.Datapath, vlanB config.VLAN) func(*config.Config) error {
		return func(cfg *config.Config) error {
			cfg.Switches = []config.Switch{{Name: "int0", Type: config.Internal, Datapath: dpath}}
			cfg.VMs = []config.VM{{Name: "vm"}}
			cfg.Adapters = []config.Adapter{
				{VM: "vm", Name: "a", Switch: "int0", MAC: macA, Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: a.Name}},
				{VM: "vm", Name: "b", Switch: "int0", MAC: macB, VLAN: vlanB, Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: b.Name}},
			}
			return nil
		}
	}
	out, err := c.Change(state(config.Kernel, config.VLAN{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes: %v", out.Changes)
	if l := a.Link(t, "eth0"); l.Type() != "veth" || l.Attrs().HardwareAddr.String() != "02:56:53:08:00:01" {
		t.Fatalf("a's eth0 is a %s with MAC %s, want a veth with the adapter's MAC", l.Type(), l.Attrs().HardwareAddr)
	}
	a.AddAddr(t, "eth0", "10.97.0.1/24")
	b.AddAddr(t, "eth0", "10.97.0.2/24")
	host.AddAddr(t, "int0", "10.97.0.254/24")
	pings := func(want bool, from *netnstest.NS, to string) {
		t.Helper()
		if err := from.Ping(t, to, 2*time.Second); (err == nil) != want {
			t.Fatalf("ping %s from %s: %v, want reachable=%v", to, from, err, want)
		}
	}
	pings(true, a, "10.97.0.2")
	pings(true, a, "10.97.0.254")
	pings(true, host, "10.97.0.2")

	// vswitchd stops: the pinned program goes on switching; the next one
	// takes the switch over without detaching anything.
	c.Close()
	dp.Close()
	pings(true, a, "10.97.0.2")
	if dp, err = kdp.Open(kdp.Options{Namespace: host.Name, PinDir: pins}); err != nil {
		t.Fatal(err)
	}
	c = start()
	pings(true, b, "10.97.0.254")
	if err := nsrun.In(nsrun.Path(host.Name), func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if !strings.HasPrefix(l.Attrs().Name, "vk") {
				continue
			}
			r, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
			if err != nil || len(r.Programs) != 1 {
				t.Errorf("%s after the restart: %v programs (%v), want 1", l.Attrs().Name, r, err)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	sw := c.Switch("int0")
	var rx uint64
	for _, p := range sw.Ports() {
		if p.Name == "vm/a" {
			rx = p.Counters.RxPackets
		}
	}
	if rx == 0 {
		t.Fatalf("the kernel switch's counters show nothing from vm/a: %+v", sw.Ports())
	}
	rows, _, err := sw.MACPage(l2.MACCursor{}, 100, l2.MACFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, r := range rows {
		table = append(table, r.VID.String()+" "+r.MAC.String()+" "+r.PortName)
	}
	if got := strings.Join(table, "\n"); !strings.Contains(got, "0 02:56:53:08:00:01 vm/a") || !strings.Contains(got, "1 ") {
		t.Fatalf("MAC table of the kernel switch:\n%s", got)
	}

	// b in VLAN 10: isolated from a and the host adapter (VLAN 1).
	if _, err := c.Change(state(config.Kernel, config.VLAN{Mode: config.ModeAccess, Access: 10})); err != nil {
		t.Fatal(err)
	}
	pings(false, a, "10.97.0.2")
	pings(true, a, "10.97.0.254")

	// To the userspace core and back: the namespace adapters' interfaces
	// are made anew (TAP, veth), so the workloads set their addresses again.
	for _, dpath := range []config.Datapath{config.Userspace, config.Kernel} {
		if _, err := c.Change(state(dpath, config.VLAN{})); err != nil {
			t.Fatalf("to %s: %v", dpath, err)
		}
		for _, ns := range []*netnstest.NS{a, b} {
			ns.AddAddr(t, "eth0", strings.Replace("10.97.0.X/24", "X", map[*netnstest.NS]string{a: "1", b: "2"}[ns], 1))
		}
		host.AddAddr(t, "int0", "10.97.0.254/24")
		pings(true, a, "10.97.0.2")
		pings(true, b, "10.97.0.254")
	}

	removeAllLeavesNothing(t, c, host)
	for _, ns := range []*netnstest.NS{a, b} {
		if err := ns.Do(func() error { _, err := netlink.LinkByName("eth0"); return err }); err == nil {
			t.Errorf("eth0 left in %s", ns)
		}
	}
}

// A QEMU socket adapter on a kernel switch is served by the core, joined
// to the program by one veth: frames cross in both directions with the
// switch's semantics (VLANs isolate across the join), the socket's port is
// in the switch's counters and MAC table, the join in neither, and
// removing the switch leaves no device.
func TestKernelSwitchWithAQEMUSocket(t *testing.T) {
	host, a := netnstest.New(t), netnstest.New(t)
	host.NoIPv6(t)
	a.NoIPv6(t)
	dp, err := kdp.Open(kdp.Options{Namespace: host.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "v.db"), &config.Config{Host: config.DefaultHost("t")})
	if err != nil {
		t.Fatal(err)
	}
	be := daemon.OSBackend{Namespace: host.Name}
	c := daemon.NewController(daemon.Deps{Store: st, Backend: be, Host: be, Runner: &apitest.Runner{}, Kernel: dp, SocketDirs: []string{dir},
		Log: slog.New(slog.DiscardHandler), RetryEvery: time.Hour})
	c.Start()
	t.Cleanup(func() { c.Close(); st.Close() })
	macA, macQ, macR := frame.MAC{2, 0x56, 0x53, 9, 1, 1}, frame.MAC{2, 0x56, 0x53, 9, 1, 2}, frame.MAC{2, 0x56, 0x53, 9, 1, 3}
	if _, err := c.Change(func(cfg *config.Config) error {
		cfg.Switches = []config.Switch{{Name: "k0", Type: config.Private, Datapath: config.Kernel}}
		cfg.VMs = []config.VM{{Name: "vm"}}
		cfg.Adapters = []config.Adapter{
			{VM: "vm", Name: "a", Switch: "k0", MAC: macA, Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: a.Name}},
			{VM: "vm", Name: "q", Switch: "k0", MAC: macQ, Attachment: config.Attachment{Kind: config.AttachQEMUDgram, Socket: filepath.Join(dir, "q.sock")}},
			{VM: "vm", Name: "r", Switch: "k0", MAC: macR, VLAN: config.VLAN{Mode: config.ModeAccess, Access: 10},
				Attachment: config.Attachment{Kind: config.AttachQEMUDgram, Socket: filepath.Join(dir, "r.sock")}},
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	peer := func(name, daemonSock string) *net.UnixConn {
		conn, err := net.DialUnix("unixgram", &net.UnixAddr{Name: filepath.Join(dir, name), Net: "unixgram"},
			&net.UnixAddr{Name: daemonSock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	q, r := peer("q.qemu", filepath.Join(dir, "q.sock")), peer("r.qemu", filepath.Join(dir, "r.sock"))
	raw := a.Raw(t, "eth0")
	frameOf := func(dst, src frame.MAC, id byte) []byte {
		f := append(append(append([]byte(nil), dst[:]...), src[:]...), 0x08, 0x00, id)
		return append(f, make([]byte, 45)...)
	}
	// QEMU's side speaks first: the daemon learns where to send.
	if _, err := q.Write(frameOf(frame.Broadcast, macQ, 1)); err != nil {
		t.Fatal(err)
	}
	if got := raw.Recv(2 * time.Second); got == nil || got[12+2] != 1 {
		t.Fatalf("a did not get q's broadcast across the join: %x", got)
	}
	r.Write(frameOf(frame.Broadcast, macR, 2)) // VLAN 10: not for a
	if got := raw.Recv(300 * time.Millisecond); got != nil {
		t.Fatalf("a (VLAN 1) got r's frame (VLAN 10): %x", got)
	}
	raw.Send(t, frameOf(macQ, macA, 3))
	buf := make([]byte, 2048)
	q.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := q.Read(buf)
	if err != nil || n < 15 || buf[14] != 3 || frame.MAC(buf[6:12]) != macA {
		t.Fatalf("q did not get a's unicast across the join: %x, %v", buf[:n], err)
	}
	r.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := r.Read(buf); err == nil {
		t.Fatalf("r (VLAN 10) got a frame: %x", buf[:n])
	}

	sw := c.Switch("k0")
	var names []string
	for _, p := range sw.Ports() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, " "); got != "vm/a vm/q vm/r" {
		t.Fatalf("ports of the kernel switch: %s, want vm/a vm/q vm/r", got)
	}
	rows, _, err := sw.MACPage(l2.MACCursor{}, 100, l2.MACFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for _, row := range rows {
		table = append(table, row.VID.String()+" "+row.MAC.String()+" "+row.PortName)
	}
	if got := strings.Join(table, "\n"); !strings.Contains(got, "0 "+macQ.String()+" vm/q") || !strings.Contains(got, "0 "+macA.String()+" vm/a") ||
		strings.Contains(got, "join") {
		t.Fatalf("MAC table:\n%s", got)
	}

	removeAllLeavesNothing(t, c, host)
}

// removeAllLeavesNothing empties the state and checks that the host's
// namespace has nothing left but its loopback.
func removeAllLeavesNothing(t *testing.T, c *daemon.Controller, host *netnstest.NS) {
	t.Helper()
	if _, err := c.Change(func(cfg *config.Config) error { *cfg = config.Config{Host: cfg.Host}; return nil }); err != nil {
		t.Fatal(err)
	}
	err := nsrun.In(nsrun.Path(host.Name), func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				t.Errorf("left in the host namespace: %s (%s)", l.Attrs().Name, l.Type())
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
