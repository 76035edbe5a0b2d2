package daemon_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/apitest"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/store"
)

var errKilled = errors.New("killed")

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// hostView renders what a user checks after a crash: in each namespace,
// every link (type, alias, MAC, MTU, up), its addresses and routes, the
// NIC's IPv6 setting; and the socket files in dir.
func hostView(t *testing.T, dir string, nss ...*netnstest.NS) string {
	t.Helper()
	var lines []string
	for _, ns := range nss {
		h, err := nsrun.Netlink(ns.Path)
		if err != nil {
			t.Fatal(err)
		}
		links, _ := h.LinkList()
		names := map[int]string{}
		for _, l := range links {
			a := l.Attrs()
			names[a.Index] = a.Name
			if a.Name == "lo" {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s link %s %s alias=%q mac=%s mtu=%d up=%v", ns.Name, a.Name, l.Type(), a.Alias,
				a.HardwareAddr, a.MTU, a.Flags&1 != 0))
			addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
			for _, ad := range addrs {
				if ad.IP.IsLinkLocalUnicast() {
					continue
				}
				lines = append(lines, fmt.Sprintf("%s addr %s %s", ns.Name, a.Name, ad.IPNet))
			}
		}
		routes, _ := h.RouteList(nil, netlink.FAMILY_ALL)
		for _, r := range routes {
			if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s route %v via %v dev %s metric %d proto %d", ns.Name, r.Dst, r.Gw, names[r.LinkIndex], r.Priority, r.Protocol))
		}
		h.Close()
		ns.Do(func() error {
			if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/nic0/disable_ipv6"); err == nil {
				lines = append(lines, ns.Name+" nic0 disable_ipv6="+strings.TrimSpace(string(b)))
			}
			return nil
		})
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, f := range files {
		lines = append(lines, "socket "+filepath.Base(f))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestCrashAtEveryHostStep is the crash test on a real host: a daemon in a
// namespace of the test, with a NIC (a veth to a "LAN" namespace) that has
// an address, a default route and a route with a metric. Each change is
// cut before every host step it takes (every TAP, socket, identity move
// and each address and route of a move) by a panic, the daemon is
// dropped as a kill would drop it, and a new one starts on the same store:
// the host's links, addresses, routes and sockets must then be exactly
// those of the stored state, which must be the state before or after.
func TestCrashAtEveryHostStep(t *testing.T) {
	host, lan, a, b := netnstest.New(t), netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Veth(t, host, "nic0", lan, "eth0")
	host.AddAddr(t, "nic0", "10.94.0.5/24")
	host.Do(func() error {
		l, err := netlink.LinkByName("nic0")
		if err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: []byte{10, 94, 0, 1}}); err != nil {
			return err
		}
		_, dst, _ := net.ParseCIDR("10.95.0.0/16")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: []byte{10, 94, 0, 1}, Priority: 50})
	})
	dir := t.TempDir()
	steps, crashAt := 0, 0
	be := daemon.OSBackend{Namespace: host.Name, Step: func(string) {
		steps++
		if steps == crashAt {
			panic(errKilled)
		}
	}}
	dbPath := filepath.Join(dir, "v.db")
	open := func() (*store.Store, *daemon.Controller) {
		st, err := store.Open(dbPath, &config.Config{Host: config.DefaultHost("t")})
		if err != nil {
			t.Fatal(err)
		}
		c := daemon.NewController(daemon.Deps{Store: st, Backend: be, Host: be, Runner: &apitest.Runner{}, Log: slog.New(slog.DiscardHandler),
			SocketDirs: []string{dir}, RetryEvery: time.Hour})
		if _, err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return st, c
	}
	st, ctl := open()
	t.Cleanup(func() {
		crashAt = 0
		ctl.Change(func(c *config.Config) error { *c = config.Config{Host: c.Host}; return nil })
		ctl.Close()
		st.Close()
	})
	set := func(c *config.Config) func(*config.Config) error {
		return func(cur *config.Config) error { *cur = *c.Clone(); return nil }
	}
	view := func() string { return hostView(t, dir, host, a, b) }
	netnsAdapter := func(name string, ns *netnstest.NS, mac byte) config.Adapter {
		return config.Adapter{VM: "vm", Name: name, Switch: "int0", MAC: [6]byte{2, 0x56, 0x53, 9, 0, mac},
			Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: ns.Name}}
	}
	sockAdapter := func(name string, mac byte) config.Adapter {
		return config.Adapter{VM: "vm", Name: name, Switch: "int0", MAC: [6]byte{2, 0x56, 0x53, 9, 0, mac},
			Attachment: config.Attachment{Kind: config.AttachQEMUStream, Socket: filepath.Join(dir, name+".sock")}}
	}
	base, _, _ := st.Load()
	withVM := func(ads ...config.Adapter) *config.Config {
		c := base.Clone()
		c.Switches = append(c.Switches, config.Switch{Name: "int0", Type: config.Internal})
		c.VMs = []config.VM{{Name: "vm"}}
		c.Adapters = ads
		return c
	}
	ext := base.Clone()
	ext.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "nic0"}}
	no := false
	extOff := base.Clone() // the NIC is the switch's alone: its identity is taken off it
	extOff.Switches = []config.Switch{{Name: "ext0", Type: config.External, Uplink: "nic0", AllowManagementOS: &no}}
	cases := []struct {
		name         string
		before, next *config.Config
		notAfter     string // what the host must not have after the change
	}{
		{"external switch create", base, ext, ""},
		{"external switch delete", ext, base, ""},
		{"external switch without the management OS create", base, extOff, "addr nic0 10.94.0.5/24"},
		{"management OS allowed", extOff, ext, ""},
		{"management OS disallowed", ext, extOff, "10.94.0.5/24"},
		{"external switch without the management OS delete", extOff, base, ""},
		{"adapter add", withVM(netnsAdapter("a", a, 1)), withVM(netnsAdapter("a", a, 1), netnsAdapter("b", b, 2)), ""},
		{"adapter remove", withVM(netnsAdapter("a", a, 1), sockAdapter("s", 3)), withVM(netnsAdapter("a", a, 1)), ""},
		{"VM removal", withVM(netnsAdapter("a", a, 1), netnsAdapter("b", b, 2), sockAdapter("s", 3), sockAdapter("t", 4)), withVM(), ""},
	}
	for _, tc := range cases {
		crashAt = 0
		if _, err := ctl.Change(set(tc.before)); err != nil {
			t.Fatalf("%s: before: %v", tc.name, err)
		}
		before := view()
		start := steps
		if _, err := ctl.Change(set(tc.next)); err != nil {
			t.Fatalf("%s: the change: %v", tc.name, err)
		}
		n, after := steps-start, view()
		if before == after {
			t.Fatalf("%s: the change changed nothing on the host", tc.name)
		}
		if tc.notAfter != "" && strings.Contains(after, tc.notAfter) {
			t.Fatalf("%s: after the change the host still has %s:\n%s", tc.name, tc.notAfter, after)
		}
		for k := 1; k <= n; k++ {
			if _, err := ctl.Change(set(tc.before)); err != nil {
				t.Fatalf("%s: back to before: %v", tc.name, err)
			}
			if got := view(); got != before {
				t.Fatalf("%s: going back did not give the host back:\n%s\nwant\n%s", tc.name, got, before)
			}
			crashAt = steps + k
			func() {
				defer func() {
					if r := recover(); r != nil && r != errKilled {
						panic(r)
					}
				}()
				ctl.Change(set(tc.next))
				t.Fatalf("%s: no crash at step %d of %d", tc.name, k, n)
			}()
			crashAt = 0
			ctl.Close() // what a kill leaves: descriptors closed, nothing undone
			st.Close()
			st, ctl = open()
			stored, _, _ := st.Load()
			var want string
			switch js(stored) {
			case js(tc.before):
				want = before
			case js(tc.next):
				want = after
			default:
				t.Fatalf("%s: killed before host step %d: the stored state is neither the one before nor the one after:\n%s", tc.name, k, js(stored))
			}
			if got := view(); got != want {
				t.Fatalf("%s: killed before host step %d of %d; after the restart the host has\n%s\nwant\n%s", tc.name, k, n, got, want)
			}
		}
		t.Logf("%s: %d host steps, each cut once", tc.name, n)
	}
}

// A TAP adapter whose TAP another process holds (a QEMU that vswitch did
// not start, a second user of the name) is refused with the step that
// failed: nothing is stored, and the other process's TAP is left alone.
func TestBusyTAPRefused(t *testing.T) {
	host := netnstest.New(t)
	held, err := tap.Open(tap.Config{Name: "busy0", Namespace: host.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	st, err := store.Open(filepath.Join(t.TempDir(), "v.db"), &config.Config{Host: config.DefaultHost("t")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	be := daemon.OSBackend{Namespace: host.Name}
	c := daemon.NewController(daemon.Deps{Store: st, Backend: be, Host: be, Runner: &apitest.Runner{}, Log: slog.New(slog.DiscardHandler), RetryEvery: time.Hour})
	c.Start()
	defer c.Close()
	if _, err := c.Change(func(cfg *config.Config) error {
		cfg.Switches = append(cfg.Switches, config.Switch{Name: "int0", Type: config.Internal})
		cfg.VMs = append(cfg.VMs, config.VM{Name: "vm"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, rev, _ := st.Load()
	_, err = c.Change(func(cfg *config.Config) error {
		cfg.Adapters = append(cfg.Adapters, config.Adapter{VM: "vm", Name: "eth0", Switch: "int0", MAC: [6]byte{2, 0x56, 0x53, 9, 0, 1},
			Attachment: config.Attachment{Kind: config.AttachTAP, Device: "busy0"}})
		return nil
	})
	var refused *daemon.RefusedError
	if !errors.As(err, &refused) || !strings.Contains(refused.Step, "open tap") || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("adapter on a busy TAP: %v; want refused at its open step", err)
	}
	if cfg, now, _ := st.Load(); now != rev || cfg.Adapter("vm", "eth0") != nil {
		t.Fatalf("the refused adapter was stored (revision %d -> %d)", rev, now)
	}
	if l := host.Link(t, "busy0"); l == nil || l.Attrs().Alias != "" {
		t.Fatalf("the other process's TAP was touched: %v", l)
	}
}
