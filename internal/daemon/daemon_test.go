package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/mem"
)

// fakeBackend "opens" in-memory ports and renders the devices it holds.
type fakeBackend struct {
	mu       sync.Mutex
	steps    int // host steps taken
	crashAt  int // panic before this step (1-based); 0: never
	devices  map[string]PortSpec
	removed  []string
	failOpen map[string]bool
	notYet   map[string]bool   // ports whose namespace is not there yet
	identity map[string]string // NIC → who holds its identity
	failBack bool
	hang     map[string]chan struct{} // Open of these ports waits until the channel is closed
	hung     chan string              // told the port whose Open hangs
}

func newFake() *fakeBackend {
	return &fakeBackend{devices: map[string]PortSpec{}, failOpen: map[string]bool{}, identity: map[string]string{}}
}

// step counts a host step and crashes there if told to; f.mu is held.
func (f *fakeBackend) step() {
	f.steps++
	if f.steps == f.crashAt {
		panic(errCrash) // the caller's deferred Unlock runs
	}
}

var errCrash = errors.New("injected crash")

func (f *fakeBackend) SaveIdentity(nic string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step()
	return []byte(`"` + nic + ` as it was"`), nil
}

func (f *fakeBackend) TakeOver(nic, host string, saved []byte) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step()
	if string(saved) != `"`+nic+` as it was"` {
		return 0, fmt.Errorf("TakeOver of %s with saved %s", nic, saved)
	}
	f.identity[nic] = host
	return 0, nil
}

func (f *fakeBackend) SetPeers(device string, peers []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step()
	return nil
}

func (f *fakeBackend) GiveBack(host, nic string, saved []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step()
	if f.failBack {
		return errors.New("address in use")
	}
	if string(saved) != `"`+nic+` as it was"` {
		return fmt.Errorf("GiveBack of %s with saved %s", nic, saved)
	}
	delete(f.identity, nic) // from the host adapter, or from what was saved
	return nil
}

func (f *fakeBackend) Open(s PortSpec) (l2.Port, error) {
	f.mu.Lock()
	wait := f.hang[s.Name]
	f.mu.Unlock()
	if wait != nil {
		f.hung <- s.Name
		<-wait
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step()
	if f.failOpen[s.Name] {
		return nil, errors.New("no such device")
	}
	if f.notYet[s.Name] {
		return nil, fmt.Errorf("namespace %s: %w", s.Namespace, ErrNotYet)
	}
	f.devices[s.Switch+"/"+s.Name] = s
	p, _ := mem.NewPair(mem.Config{QueueLen: 4, MaxFrame: 2048})
	return p, nil
}

func (f *fakeBackend) Remove(s PortSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.step()
	delete(f.devices, s.Switch+"/"+s.Name)
	f.removed = append(f.removed, s.Switch+"/"+s.Name)
	return nil
}

func (f *fakeBackend) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for k, s := range f.devices {
		lines = append(lines, fmt.Sprintf("%s %s dev=%s ns=%s sock=%s", k, s.Kind, s.Device, s.Namespace, s.Socket))
	}
	for nic, holder := range f.identity {
		if holder == "" {
			holder = "nobody (taken off the NIC)"
		}
		lines = append(lines, fmt.Sprintf("identity of %s held by %s", nic, holder))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

var (
	macA = frame.MustParseMAC("02:56:53:00:00:0a")
	macB = frame.MustParseMAC("02:56:53:00:00:0b")
)

func base() *config.Config {
	return &config.Config{Host: config.DefaultHost("t")}
}

func withInternal(c *config.Config) *config.Config {
	c.Switches = append(c.Switches, config.Switch{Name: "int0", Type: config.Internal})
	c.VMs = append(c.VMs, config.VM{Name: "web"})
	c.Adapters = append(c.Adapters, config.Adapter{VM: "web", Name: "eth0", Switch: "int0", MAC: macA,
		Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "webns"}})
	return c
}

// TestApplySequence applies states in order and checks what changed, the
// live switches and the backend's devices after each.
func TestApplySequence(t *testing.T) {
	fb := newFake()
	d := New(fb, nil, slog.New(slog.DiscardHandler))
	defer d.Close()
	steps := []struct {
		name    string
		state   func() *config.Config
		changes []string
		live    string
		devices string
	}{
		{"empty", base, nil, "", ""},
		{"internal switch with a netns VM", func() *config.Config { return withInternal(base()) },
			[]string{"add switch int0", "add port int0 host host dev=int0 [untagged (VLAN 1)]",
				"add port int0 web/eth0 netns dev=eth0 ns=webns mac=02:56:53:00:00:0a guard [untagged (VLAN 1)]"},
			"switch int0 vlan=1\n  host host dev=int0 [untagged (VLAN 1)]\n  web/eth0 netns dev=eth0 ns=webns mac=02:56:53:00:00:0a guard [untagged (VLAN 1)]",
			"int0/host host dev=int0 ns= sock=\nint0/web/eth0 netns dev=eth0 ns=webns sock="},
		{"same again: no change", func() *config.Config { return withInternal(base()) }, nil, "", ""},
		{"VLAN change is a SetPort, not a reopen", func() *config.Config {
			c := withInternal(base())
			c.Adapters[0].VLAN = config.VLAN{Mode: config.ModeAccess, Access: 10}
			return c
		}, []string{"set port int0 web/eth0 netns dev=eth0 ns=webns mac=02:56:53:00:00:0a guard [access 10]"}, "", ""},
		{"a MAC limit is a SetPort", func() *config.Config {
			c := withInternal(base())
			c.Adapters[0].VLAN = config.VLAN{Mode: config.ModeAccess, Access: 10}
			c.Adapters[0].MACLimit = 4
			return c
		}, []string{"set port int0 web/eth0 netns dev=eth0 ns=webns mac=02:56:53:00:00:0a guard limit=4 [access 10]"}, "", ""},
		{"moving the adapter to another namespace reopens it", func() *config.Config {
			c := withInternal(base())
			c.Adapters[0].VLAN = config.VLAN{Mode: config.ModeAccess, Access: 10}
			c.Adapters[0].Attachment.Namespace = "otherns"
			return c
		}, []string{"remove port int0 web/eth0", "add port int0 web/eth0 netns dev=eth0 ns=otherns mac=02:56:53:00:00:0a guard [access 10]"},
			"", "int0/host host dev=int0 ns= sock=\nint0/web/eth0 netns dev=eth0 ns=otherns sock="},
		{"default VLAN change rebuilds the switch, devices kept", func() *config.Config {
			c := withInternal(base())
			c.Switches[0].DefaultVLAN = 7
			c.Adapters[0].Attachment.Namespace = "otherns"
			return c
		}, []string{"rebuild switch int0 (options changed)", "add port int0 host host dev=int0 [untagged (VLAN 7)]",
			"add port int0 web/eth0 netns dev=eth0 ns=otherns mac=02:56:53:00:00:0a guard [untagged (VLAN 7)]"},
			"switch int0 vlan=7\n  host host dev=int0 [untagged (VLAN 7)]\n  web/eth0 netns dev=eth0 ns=otherns mac=02:56:53:00:00:0a guard [untagged (VLAN 7)]",
			"int0/host host dev=int0 ns= sock=\nint0/web/eth0 netns dev=eth0 ns=otherns sock="},
		{"external switch without management OS, a QEMU adapter", func() *config.Config {
			c := base()
			no := false
			c.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "eth1", AllowManagementOS: &no}}
			c.VMs = []config.VM{{Name: "db"}}
			c.Adapters = []config.Adapter{{VM: "db", Name: "n0", Switch: "ext0", MAC: macB,
				Attachment: config.Attachment{Kind: config.AttachQEMUStream}}}
			return c
		}, []string{"remove switch int0", "add switch ext0",
			"add port ext0 db/n0 qemu-stream sock=/run/vswitch/db+n0.sock mac=02:56:53:00:00:0b guard [untagged (VLAN 1)]",
			"add port ext0 uplink uplink dev=eth1 [trunk 1-4094 native 1]",
			"took host identity off eth1: switch ext0 does not allow the management OS, so the host has no path through eth1 (kept, given back when the switch goes or allows it)"},
			"switch ext0 vlan=1\n  db/n0 qemu-stream sock=/run/vswitch/db+n0.sock mac=02:56:53:00:00:0b guard [untagged (VLAN 1)]\n  uplink uplink dev=eth1 [trunk 1-4094 native 1]",
			"ext0/db/n0 qemu-stream dev= ns= sock=/run/vswitch/db+n0.sock\next0/uplink uplink dev=eth1 ns= sock=\nidentity of eth1 held by nobody (taken off the NIC)"},
		{"external with the management OS: the host adapter takes the NIC's identity", func() *config.Config {
			c := base()
			c.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "eth1"}}
			return c
		}, []string{"remove port ext0 db/n0", "add port ext0 host host dev=ext0 [untagged (VLAN 1)]",
			"moved host identity eth1 -> ext0 (no address for 0.00 ms)"}, "",
			"ext0/host host dev=ext0 ns= sock=\next0/uplink uplink dev=eth1 ns= sock=\nidentity of eth1 held by ext0"},
		{"management OS off: the identity goes back first", func() *config.Config {
			c := base()
			no := false
			c.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "eth1", AllowManagementOS: &no}}
			return c
		}, []string{"moved host identity ext0 -> eth1", "remove port ext0 host", "took host identity off eth1: switch ext0 does not allow the management OS, so the host has no path through eth1 (kept, given back when the switch goes or allows it)"}, "",
			"ext0/uplink uplink dev=eth1 ns= sock=\nidentity of eth1 held by nobody (taken off the NIC)"},
		{"management OS on again", func() *config.Config {
			c := base()
			c.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "eth1"}}
			return c
		}, []string{"add port ext0 host host dev=ext0 [untagged (VLAN 1)]", "moved host identity eth1 -> ext0 (no address for 0.00 ms)"}, "",
			"ext0/host host dev=ext0 ns= sock=\next0/uplink uplink dev=eth1 ns= sock=\nidentity of eth1 held by ext0"},
		{"everything removed", base, []string{"moved host identity ext0 -> eth1", "remove switch ext0"}, "", ""},
	}
	for _, s := range steps {
		removedBefore := len(fb.removed)
		changes, err := d.Apply(s.state())
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if strings.Join(changes, "\n") != strings.Join(s.changes, "\n") {
			t.Fatalf("%s: changes\n%s\nwant\n%s", s.name, strings.Join(changes, "\n"), strings.Join(s.changes, "\n"))
		}
		if s.live != "" && d.Describe() != s.live {
			t.Fatalf("%s: live\n%s\nwant\n%s", s.name, d.Describe(), s.live)
		}
		if s.devices != "" && fb.String() != s.devices {
			t.Fatalf("%s: devices\n%s\nwant\n%s", s.name, fb.String(), s.devices)
		}
		if strings.HasPrefix(s.name, "default VLAN") && len(fb.removed) != removedBefore {
			t.Fatalf("%s: a rebuild removed devices %v; they must be re-attached, not re-made", s.name, fb.removed[removedBefore:])
		}
	}
	if d.Describe() != "" || fb.String() != "" {
		t.Fatalf("after removing everything: live %q, devices %q", d.Describe(), fb.String())
	}
}

func TestApplyRetriesFailedPorts(t *testing.T) {
	fb := newFake()
	d := New(fb, nil, slog.New(slog.DiscardHandler))
	defer d.Close()
	fb.failOpen["web/eth0"] = true
	changes, err := d.Apply(withInternal(base()))
	if se := StepErrors(err); len(se) != 1 || se[0].Switch != "int0" || se[0].Port != "web/eth0" || se[0].Step != "open netns" ||
		err.Error() != "switch int0 port web/eth0: open netns: no such device" {
		t.Fatalf("Apply with a failing port: %v", err)
	}
	if len(changes) != 2 { // the switch and its host port still came up
		t.Fatalf("changes %v", changes)
	}
	fb.failOpen["web/eth0"] = false
	changes, err = d.Apply(withInternal(base()))
	if err != nil || len(changes) != 1 || !strings.HasPrefix(changes[0], "add port int0 web/eth0") {
		t.Fatalf("retry: %v, %v", changes, err)
	}
}

// If the identity cannot go back, the switch and its host adapter stay:
// removing them would take the host's addresses with them.
func TestFailedGiveBackKeepsTheSwitch(t *testing.T) {
	fb := newFake()
	d := New(fb, nil, slog.New(slog.DiscardHandler))
	defer d.Close()
	ext := base()
	ext.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "eth1"}}
	if _, err := d.Apply(ext); err != nil {
		t.Fatal(err)
	}
	fb.failBack = true
	_, err := d.Apply(base())
	if se := StepErrors(err); len(se) != 1 || se[0].Step != "move host identity back to eth1" {
		t.Fatalf("Apply = %v", err)
	}
	if d.Switch("ext0") == nil || !strings.Contains(fb.String(), "ext0/host") || !strings.Contains(fb.String(), "identity of eth1 held by ext0") {
		t.Fatalf("the switch went although the identity could not go back:\n%s", fb)
	}
	fb.failBack = false
	if ch, err := d.Apply(base()); err != nil || d.Switch("ext0") != nil || fb.String() != "" {
		t.Fatalf("retry: %v %v\n%s", ch, err, fb)
	}
}

// OpenDevice implements Backend: the kernel data path's ports are the
// same devices to the fake.
func (f *fakeBackend) OpenDevice(s PortSpec) (string, error) {
	if _, err := f.Open(s); err != nil {
		return "", err
	}
	return "k-" + s.Switch + "/" + s.Name, nil
}

// An adapter that moves to another switch keeps its device: the old
// switch lets go of it before the new one opens it, and it is not removed
// (a TAP that QEMU holds, a namespace's interface with its addresses).
func TestAdapterMovesBetweenSwitches(t *testing.T) {
	fb := newFake()
	d := New(fb, nil, slog.New(slog.DiscardHandler))
	defer d.Close()
	state := func(sw string) *config.Config {
		c := base()
		c.Switches = []config.Switch{{Name: "alpha", Type: config.Private}, {Name: "zeta", Type: config.Private}}
		c.VMs = []config.VM{{Name: "vm"}}
		c.Adapters = []config.Adapter{
			{VM: "vm", Name: "t", Switch: sw, MAC: macA, Attachment: config.Attachment{Kind: config.AttachTAP, Device: "vnet9"}},
			{VM: "vm", Name: "n", Switch: sw, MAC: macB, Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "ns1"}},
		}
		return c
	}
	if _, err := d.Apply(state("zeta")); err != nil {
		t.Fatal(err)
	}
	changes, err := d.Apply(state("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	fb.mu.Lock()
	removed := append([]string(nil), fb.removed...)
	fb.mu.Unlock()
	if len(removed) != 0 {
		t.Fatalf("moving the adapters removed their devices: %v (changes %v)", removed, changes)
	}
	want := []string{"remove port zeta vm/n", "remove port zeta vm/t"}
	if len(changes) < 2 || !slices.Equal(changes[:2], want) {
		t.Fatalf("changes %v: the old switch must let go first (%v)", changes, want)
	}
	if got := d.Describe(); !strings.Contains(got, "switch alpha vlan=1\n  vm/n netns") || !strings.Contains(got, "  vm/t tap dev=vnet9") {
		t.Fatalf("after the move:\n%s", got)
	}
}
