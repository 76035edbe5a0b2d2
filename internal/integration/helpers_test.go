package integration

import (
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/poll"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/vlan"
)

// forwarders are the package's forwarding threads, as vswitchd has them:
// every switch of these tests reads its TAP, AF_PACKET and QEMU socket
// ports on them.
var forwarders = sync.OnceValue(func() *poll.Pool {
	p, err := poll.New(poll.Config{Threads: 2})
	if err != nil {
		panic(err)
	}
	return p
})

// newSwitch returns a running switch, its ports read by the forwarding
// threads as in vswitchd, closed at the end of the test.
func newSwitch(t *testing.T, name string) *l2.Switch {
	t.Helper()
	return newSwitchWith(t, l2.Options{Name: name, Poller: forwarders()})
}

// newSwitchWith returns a running switch made with o, closed at the end of the test.
func newSwitchWith(t testing.TB, o l2.Options) *l2.Switch {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	sw, err := l2.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return sw
}

// vm is a namespace "VM" whose eth0 is a TAP port of a switch.
type vm struct {
	ns   *netnstest.NS
	port string
	ip   string
}

// addVM makes a namespace with eth0 (a TAP) at cidr on sw, port named name.
func addVM(t *testing.T, sw *l2.Switch, name, cidr string, cfg l2.PortConfig) *vm {
	t.Helper()
	return addVMWith(t, sw, name, cidr, cfg, tap.Config{})
}

// addVMWith is addVM with the TAP opened as tc says (namespace and MAC filled in).
func addVMWith(t *testing.T, sw *l2.Switch, name, cidr string, cfg l2.PortConfig, tc tap.Config) *vm {
	t.Helper()
	ns := netnstest.New(t)
	tc.Namespace, tc.MAC = ns.Name, cfg.MAC
	p, err := tap.Open(tc)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the device goes before the namespace.
	t.Cleanup(func() { p.Delete() })
	if err := sw.AddPort(name, p, cfg); err != nil {
		t.Fatal(err)
	}
	ns.AddAddr(t, "eth0", cidr)
	ip, _, _ := net.ParseCIDR(cidr)
	return &vm{ns: ns, port: name, ip: ip.String()}
}

func mustPing(t *testing.T, from *netnstest.NS, to string) {
	t.Helper()
	if err := from.Ping(t, to, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func mustNotPing(t *testing.T, from *netnstest.NS, to string) {
	t.Helper()
	if err := from.Ping(t, to, time.Second); err == nil {
		t.Fatalf("%s reached %s, which it must not", from, to)
	}
}

// tcpTransfer sends size random bytes from one namespace to a listener in
// another and checks that the SHA-256 of what arrived matches.
func tcpTransfer(t *testing.T, from, to *netnstest.NS, toIP string, size int64) {
	t.Helper()
	netnstest.TCPTransfer(t, from, to, toIP, size)
}

func vmMAC(i byte) frame.MAC { return frame.MAC{0x02, 0x56, 0x53, 0x00, 0x10, i} }

// streamFrame is a 60-byte frame from src to dst (experimental EtherType
// 0x88b5) behind the 4-byte length of QEMU's stream framing.
func streamFrame(dst, src frame.MAC) []byte {
	f := binary.BigEndian.AppendUint32(make([]byte, 0, 4+60), 60)
	f = append(append(append(f, dst[:]...), src[:]...), 0x88, 0xb5)
	return f[:4+60]
}

// l2PortMAC is an untagged adapter port with its MAC and the spoofing guard on.
func l2PortMAC(m frame.MAC) l2.PortConfig { return l2.PortConfig{MAC: m, SpoofGuard: true} }

// assertOffloadClean fails if any port of sw dropped a frame for a bad
// virtio-net header or had super-frames cut in software (all its ports
// take them).
func assertOffloadClean(t *testing.T, sw *l2.Switch) {
	t.Helper()
	for _, p := range sw.Ports() {
		if c := p.Counters; c.Drops[l2.DropBadOffload] != 0 || c.Segmented != 0 {
			t.Errorf("port %s: %d bad-offload drops, %d super-frames segmented; want none", p.Name, c.Drops[l2.DropBadOffload], c.Segmented)
		}
	}
}

// must is for fixed test VLAN models: it panics on a constructor error.
func must(p vlan.Port, err error) vlan.Port {
	if err != nil {
		panic(err)
	}
	return p
}
