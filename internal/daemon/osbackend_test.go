package daemon_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/netnstest"
)

func ping(t *testing.T, from *netnstest.NS, to string, want bool) {
	t.Helper()
	wait := time.Second
	if want {
		wait = 10 * time.Second
	}
	err := from.Ping(t, to, wait)
	if want && err != nil {
		t.Fatal(err)
	}
	if !want && err == nil {
		t.Fatalf("%s reached %s, which it must not", from, to)
	}
}

func gone(t *testing.T, ns *netnstest.NS, link string) bool {
	return ns.Do(func() error { _, err := netlink.LinkByName(link); return err }) != nil
}

// The real backend, with the daemon's "host" in a namespace of the test:
// an internal switch with two namespace VMs and a host adapter.
func TestOSBackendInternalSwitch(t *testing.T) {
	host, a, b := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	c := &config.Config{Host: config.DefaultHost("t")}
	c.Switches = []config.Switch{{Name: "int0", Type: config.Internal, HostVLAN: config.VLAN{Mode: config.ModeAccess, Access: 10}}}
	c.VMs = []config.VM{{Name: "a"}, {Name: "b"}}
	for i, ns := range []*netnstest.NS{a, b} {
		c.Adapters = append(c.Adapters, config.Adapter{VM: c.VMs[i].Name, Name: "eth0", Switch: "int0",
			MAC: frame.MAC{0x02, 0x56, 0x53, 0, 0x20, byte(i + 1)}, VLAN: config.VLAN{Mode: config.ModeAccess, Access: 10},
			Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: ns.Name}})
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	be := daemon.OSBackend{Namespace: host.Name}
	d := daemon.New(be, nil, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { d.Close() })
	if _, err := d.Apply(c); err != nil {
		t.Fatal(err)
	}
	a.AddAddr(t, "eth0", "10.93.0.1/24")
	b.AddAddr(t, "eth0", "10.93.0.2/24")
	host.AddAddr(t, "int0", "10.93.0.254/24")
	ping(t, a, "10.93.0.2", true)
	ping(t, a, "10.93.0.254", true) // the host adapter, on VLAN 10 too
	ping(t, host, "10.93.0.2", true)

	c.Adapters[1].VLAN.Access = 20
	if ch, err := d.Apply(c); err != nil || len(ch) != 1 {
		t.Fatalf("VLAN change: %v, %v", ch, err)
	}
	ping(t, a, "10.93.0.2", false)
	ping(t, a, "10.93.0.254", true)

	// A restart: a new daemon re-attaches to the TAPs; the VMs keep their addresses.
	d.Close()
	d = daemon.New(be, nil, slog.New(slog.DiscardHandler))
	if _, err := d.Apply(c); err != nil {
		t.Fatal(err)
	}
	if got := a.Addrs(t, "eth0"); len(got) == 0 || got[0] != "10.93.0.1/24" {
		t.Fatalf("VM a's addresses after the restart: %v", got)
	}
	ping(t, a, "10.93.0.254", true)

	c.Adapters = c.Adapters[:1]
	if _, err := d.Apply(c); err != nil {
		t.Fatal(err)
	}
	if !gone(t, b, "eth0") {
		t.Fatal("removing adapter b left its TAP in its namespace")
	}
	c.Adapters, c.Switches = nil, nil
	if _, err := d.Apply(c); err != nil {
		t.Fatal(err)
	}
	if !gone(t, a, "eth0") || !gone(t, host, "int0") {
		t.Fatal("removing the switch left a TAP behind")
	}
}
