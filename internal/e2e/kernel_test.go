package e2e

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/netnstest"
)

// TestKernelTrunkSuperFrames: two kernel data path switches joined by a
// veth whose ends are their uplinks (trunks of every VLAN). TCP between
// access-10 VMs on either side crosses the wire as tagged super-frames
// (the eBPF program pushes the tag on a GSO packet on one side and pops it
// on the other; nothing is segmented), every byte arrives, and a VLAN 20
// VM on the far switch sees none of it.
func TestKernelTrunkSuperFrames(t *testing.T) {
	netnstest.RequireRoot(t)
	p := startProduct(t, "--bpf-dir", "")
	netnstest.Veth(t, p.daemonNS, "wirea", p.daemonNS, "wireb")
	for _, sw := range []struct{ name, nic string }{{"kexta", "wirea"}, {"kextb", "wireb"}} {
		code, out, errOut := p.ctl("switch", "add", sw.name, "--type", "external", "--uplink", sw.nic, "--allow-management-os=false", "--datapath", "kernel")
		if code != 0 && strings.Contains(errOut, "kernel data path is not available") {
			t.Skipf("no kernel data path here: %s", errOut)
		}
		if code != 0 {
			t.Fatalf("switch add %s: exit %d\n%s%s", sw.name, code, out, errOut)
		}
	}
	vms := map[string]vm{"a": {netnstest.New(t), "10.93.0.1"}, "b": {netnstest.New(t), "10.93.0.2"}, "c": {netnstest.New(t), "10.93.0.3"}}
	for _, v := range []struct{ name, sw, vlan string }{{"a", "kexta", "10"}, {"b", "kextb", "10"}, {"c", "kextb", "20"}} {
		p.must("vm", "add", v.name)
		p.must("adapter", "add", v.name+"/eth0", "--switch", v.sw, "--netns", vms[v.name].ns.Name)
		p.must("adapter", "vlan", v.name+"/eth0", "--access", v.vlan)
		waitLink(t, vms[v.name].ns, "eth0", p)
		vms[v.name].ns.AddAddr(t, "eth0", vms[v.name].ip+"/24")
	}

	// What crosses the wire, seen where it arrives (before the eBPF program
	// at wireb's ingress takes it), and what reaches c.
	wire, atC := p.daemonNS.Raw(t, "wireb"), vms["c"].ns.Raw(t, "eth0")
	var wg sync.WaitGroup
	var onWire, leaked [][]byte
	wg.Add(2)
	go func() { defer wg.Done(); onWire = wire.RecvAll(4 * time.Second) }()
	go func() { defer wg.Done(); leaked = atC.RecvAll(4 * time.Second) }()
	if err := vms["a"].ns.Ping(t, vms["b"].ip, 5*time.Second); err != nil {
		t.Fatalf("a cannot reach b across the two kernel switches: %v\n%s", err, p.log)
	}
	netnstest.TCPTransfer(t, vms["a"].ns, vms["b"].ns, vms["b"].ip, 32<<20)
	wg.Wait()

	var super, tagged10, other int
	for _, f := range onWire {
		if len(f) < 18 || binary.BigEndian.Uint16(f[12:]) != 0x8100 {
			other++
			continue
		}
		if binary.BigEndian.Uint16(f[14:])&0xfff == 10 {
			tagged10++
			if len(f) > 1518 {
				super++
			}
		}
	}
	t.Logf("on the wire: %d frames tagged 10 (%d super-frames), %d others", tagged10, super, other)
	if super == 0 {
		t.Fatalf("no tagged super-frame crossed the trunk (%d frames tagged 10, %d others): the tag push segmented them", tagged10, other)
	}
	for _, f := range leaked {
		if len(f) > 100 {
			t.Fatalf("c (VLAN 20) received a %d-byte frame of VLAN 10's transfer", len(f))
		}
	}
	if err := vms["c"].ns.Ping(t, vms["a"].ip, time.Second); err == nil {
		t.Fatal("c (VLAN 20) reaches a (VLAN 10)")
	}

	// A frame longer than a's port takes (the wire carries jumbo frames,
	// a's port 1500 bytes) is counted as too big on a's port, once as a
	// known destination and once flooded, and not as sent.
	for _, l := range []string{"wirea", "wireb"} {
		if err := p.daemonNS.Do(func() error {
			link, err := netlink.LinkByName(l)
			if err != nil {
				return err
			}
			return netlink.LinkSetMTU(link, 9000)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var dst [6]byte
	if err := vms["a"].ns.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil {
			copy(dst[:], l.Attrs().HardwareAddr)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before := kernelPortStats(t, p, "kexta", "a/eth0")
	jumbo := func(to [6]byte) []byte {
		f := append(append(append([]byte{}, to[:]...), 0x02, 0x11, 0x22, 0x33, 0x44, 0x55), 0x81, 0x00, 0x00, 10, 0x08, 0x00)
		return append(f, make([]byte, 4000)...)
	}
	wire.Send(t, jumbo(dst))                                      // known: a's MAC
	wire.Send(t, jumbo([6]byte{0x02, 0x99, 0x99, 0x99, 0x99, 9})) // unknown: flooded to a
	var after api.PortStats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		after = kernelPortStats(t, p, "kexta", "a/eth0")
		if after.Drops["too-big"]-before.Drops["too-big"] >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if got := after.Drops["too-big"] - before.Drops["too-big"]; got != 2 || after.TxPackets != before.TxPackets {
		t.Fatalf("two jumbo frames for a's 1500-byte port: %d counted too big, tx %d -> %d; want 2 and no tx", got, before.TxPackets, after.TxPackets)
	}
}

// TestKernelMovesReported: a station that moves between ports of a kernel
// switch is logged by vswitchd with the ports' names, as the core's are.
func TestKernelMovesReported(t *testing.T) {
	netnstest.RequireRoot(t)
	p := startProduct(t, "--bpf-dir", "")
	if code, _, errOut := p.ctl("switch", "add", "kmv", "--type", "private", "--datapath", "kernel"); code != 0 {
		if strings.Contains(errOut, "not available") {
			t.Skipf("no kernel data path here: %s", errOut)
		}
		t.Fatalf("switch add: %s", errOut)
	}
	ns := map[string]*netnstest.NS{"a": netnstest.New(t), "b": netnstest.New(t)}
	for _, v := range []string{"a", "b"} {
		p.must("vm", "add", v)
		p.must("adapter", "add", v+"/eth0", "--switch", "kmv", "--netns", ns[v].Name, "--spoof-guard=false")
		waitLink(t, ns[v], "eth0", p)
	}
	station := []byte{0x02, 0x42, 0x42, 0x42, 0x42, 0x42}
	f := append(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, station...), 0x08, 0x00)
	f = append(f, make([]byte, 46)...)
	ns["a"].Raw(t, "eth0").Send(t, f)
	time.Sleep(100 * time.Millisecond)
	ns["b"].Raw(t, "eth0").Send(t, f)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.log.String(), `msg="station moved" switch=kmv mac=02:42:42:42:42:42 vlan=1 from=a/eth0 to=b/eth0`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no report of the move in the daemon's log:\n%s", p.log)
		}
	}
}

// kernelPortStats reads one port's counters with vswitchctl stats.
func kernelPortStats(t *testing.T, p *product, sw, port string) api.PortStats {
	t.Helper()
	var all []api.PortStats
	if err := json.Unmarshal([]byte(p.must("stats", sw, "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	for _, ps := range all {
		if ps.Port == port {
			return ps
		}
	}
	t.Fatalf("no counters of %s on %s", port, sw)
	return api.PortStats{}
}

// TestMACLimit: an adapter's MAC limit holds on both data paths alike, as
// a user sees it through vswitchctl: a VM that bridges for others (its
// spoofing guard off) gets its first stations learned and the next one
// refused (counted, its frames still delivered); raising the limit lets
// the next learn.
func TestMACLimit(t *testing.T) {
	netnstest.RequireRoot(t)
	p := startProduct(t, "--bpf-dir", "")
	for _, dp := range []string{"userspace", "kernel"} {
		t.Run(dp, func(t *testing.T) {
			sw := "lim" + dp[:1]
			if code, _, errOut := p.ctl("switch", "add", sw, "--type", "private", "--datapath", dp); code != 0 {
				if strings.Contains(errOut, "not available") {
					t.Skipf("no kernel data path here: %s", errOut)
				}
				t.Fatalf("switch add: %s", errOut)
			}
			ns := map[string]*netnstest.NS{"a": netnstest.New(t), "b": netnstest.New(t)}
			for _, v := range []string{"a", "b"} {
				p.must("vm", "add", sw+v)
				p.must("adapter", "add", sw+v+"/eth0", "--switch", sw, "--netns", ns[v].Name, "--spoof-guard=false", "--mac-limit", "2")
				waitLink(t, ns[v], "eth0", p)
			}
			from, to := ns["a"].Raw(t, "eth0"), ns["b"].Raw(t, "eth0")
			to.RecvAll(100 * time.Millisecond) // the links' own frames, if any
			send := func(i byte) {
				t.Helper()
				f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x4c, 0x49, 0x4d, 0, i, 0x88, 0xb5}, make([]byte, 46)...)
				from.Send(t, f)
				for deadline := time.Now().Add(2 * time.Second); ; {
					got := to.Recv(time.Until(deadline))
					if got == nil {
						t.Fatalf("the broadcast from station %d did not reach the other VM", i)
					}
					if len(got) >= 14 && got[12] == 0x88 && got[13] == 0xb5 && got[11] == i {
						break
					}
				}
			}
			for i := range byte(3) {
				send(i)
			}
			port := sw + "a/eth0"
			learned := func() int {
				var rows []api.FDBEntry
				if err := json.Unmarshal([]byte(p.must("fdb", sw, "--port", port, "-o", "json")), &rows); err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, e := range rows {
					if !e.Static {
						n++
					}
				}
				return n
			}
			if n, c := learned(), kernelPortStats(t, p, sw, port); n != 2 || c.LearnRefused != 1 {
				t.Fatalf("three stations behind a limit of 2: %d learned, learn-refused %d; want 2 and 1", n, c.LearnRefused)
			}
			p.must("adapter", "set", sw+"a/eth0", "--mac-limit", "3") // the port forgets, and learns up to 3
			for i := range byte(4) {
				send(i)
			}
			if n, c := learned(), kernelPortStats(t, p, sw, port); n != 3 || c.LearnRefused != 2 {
				t.Fatalf("four stations behind a limit of 3: %d learned, learn-refused %d; want 3 and 2", n, c.LearnRefused)
			}
		})
	}
}
