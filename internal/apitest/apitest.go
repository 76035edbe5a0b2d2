// Package apitest has the test doubles of the daemon's OS side for API and
// CLI tests without root: a backend that opens in-memory ports, a host
// with a given set of NICs, and a VM runner that only records.
package apitest

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/store"
	"github.com/vswitch/vswitch/internal/vlan"
	"github.com/vswitch/vswitch/internal/vmrun"
)

// Backend opens in-memory ports. FailOpen ("switch/port") and FailBack
// make those steps fail; NotYet names namespaces that do not exist yet.
type Backend struct {
	mu       sync.Mutex
	FailOpen map[string]bool
	FailBack bool
	NotYet   map[string]bool
	Peers    map[string][]netip.Addr // tunnel device → the peers SetPeers gave it
}

// SetNotYet replaces NotYet while the daemon runs.
func (b *Backend) SetNotYet(ns map[string]bool) {
	b.mu.Lock()
	b.NotYet = ns
	b.mu.Unlock()
}

// Open implements daemon.Backend.
func (b *Backend) Open(s daemon.PortSpec) (l2.Port, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.FailOpen[s.Switch+"/"+s.Name] {
		return nil, errors.New("no such device")
	}
	if b.NotYet[s.Namespace] {
		return nil, fmt.Errorf("namespace %s: %w", s.Namespace, daemon.ErrNotYet)
	}
	p, _ := mem.NewPair(mem.Config{QueueLen: 4, MaxFrame: 2048})
	return p, nil
}

// OpenDevice implements daemon.Backend: a kernel data path port's device
// is named after its switch and port.
func (b *Backend) OpenDevice(s daemon.PortSpec) (string, error) {
	if _, err := b.Open(s); err != nil {
		return "", err
	}
	return "k-" + s.Switch + "-" + s.Name, nil
}

// Remove implements daemon.Backend.
func (b *Backend) Remove(daemon.PortSpec) error { return nil }

// SaveIdentity implements daemon.Backend.
func (b *Backend) SaveIdentity(nic string) ([]byte, error) { return []byte(`"` + nic + `"`), nil }

// TakeOver implements daemon.Backend.
func (b *Backend) TakeOver(string, string, []byte) (time.Duration, error) { return 0, nil }

// SetPeers implements daemon.Backend: the peers are kept in Peers.
func (b *Backend) SetPeers(device string, peers []netip.Addr) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Peers == nil {
		b.Peers = map[string][]netip.Addr{}
	}
	b.Peers[device] = peers
	return nil
}

// GiveBack implements daemon.Backend.
func (b *Backend) GiveBack(string, string, []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.FailBack {
		return errors.New("address in use")
	}
	return nil
}

// Host has the NICs named in it, with their MACs (zero: none known).
type Host map[string]frame.MAC

// CheckNIC implements daemon.Host.
func (h Host) CheckNIC(name string) error {
	if _, ok := h[name]; ok {
		return nil
	}
	return errors.New("no such device")
}

// NICs implements daemon.Host.
func (h Host) NICs() ([]string, error) { return slices.Sorted(maps.Keys(h)), nil }

// MAC implements daemon.Host.
func (h Host) MAC(name string) (frame.MAC, error) {
	if m, ok := h[name]; ok {
		return m, nil
	}
	return frame.MAC{}, errors.New("no such device")
}

// Controller returns a controller over st with this package's doubles.
func Controller(st *store.Store, b *Backend, h Host, r *Runner) *daemon.Controller {
	return daemon.NewController(daemon.Deps{Store: st, Backend: b, Host: h, Runner: r, Log: slog.New(slog.DiscardHandler)})
}

// Runner records VM starts and stops, checking the QEMU arguments as the
// real runner would.
type Runner struct {
	mu     sync.Mutex
	state  map[string]string
	onExit func(string)
}

// OnExit implements daemon.Runner.
func (f *Runner) OnExit(fn func(string)) { f.onExit = fn }

// Start implements daemon.Runner.
func (f *Runner) Start(vm config.VM, ads []config.Adapter) (api.VMStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		f.state = map[string]string{}
	}
	if f.state[vm.Name] == "running" {
		return api.VMStatus{}, vmrun.ErrRunning
	}
	if _, err := vmrun.Args(vm, ads, "tcg"); err != nil {
		return api.VMStatus{}, err
	}
	f.state[vm.Name] = "running"
	return api.VMStatus{Name: vm.Name, State: "running", Accel: "tcg", Note: "fake"}, nil
}

// Stop implements daemon.Runner; it reports the exit as the real one does.
func (f *Runner) Stop(name string, _ time.Duration) (api.VMStatus, error) {
	f.mu.Lock()
	if f.state[name] != "running" {
		f.mu.Unlock()
		return api.VMStatus{Name: name, State: "stopped"}, vmrun.ErrNotRunning
	}
	f.state[name] = "exited"
	f.mu.Unlock()
	if f.onExit != nil {
		f.onExit(name)
	}
	return api.VMStatus{Name: name, State: "exited"}, nil
}

// Adopt implements daemon.Runner: no VM outlives a test's daemon.
func (f *Runner) Adopt(string, string) (api.VMStatus, bool) { return api.VMStatus{}, false }

// Leftovers implements daemon.Runner.
func (f *Runner) Leftovers() []string { return nil }

// Status implements daemon.Runner.
func (f *Runner) Status(name string) api.VMStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state[name]
	if st == "" {
		st = "stopped"
	}
	return api.VMStatus{Name: name, State: st}
}

// Console implements daemon.Runner.
func (f *Runner) Console(name string) string { return "console of " + name }

// countingPort is an in-memory port whose backend keeps counters of its own.
type countingPort struct {
	*mem.Port
	counters map[string]uint64
}

func (p countingPort) BackendCounters() map[string]uint64 { return maps.Clone(p.counters) }

// Probe attaches an in-memory port named name to the running switch sw
// behind the daemon's back, an access port of VLAN vid whose backend
// reports counters (none if nil), and returns the test's end of it.
func Probe(ctl *daemon.Controller, sw, name string, vid frame.VID, counters map[string]uint64) (*mem.Port, error) {
	v, err := vlan.Access(vid)
	if err != nil {
		return nil, err
	}
	end, peer := mem.NewPair(mem.Config{})
	var p l2.Port = end
	if counters != nil {
		p = countingPort{end, counters}
	}
	s := ctl.CoreSwitch(sw)
	if s == nil {
		return nil, fmt.Errorf("no running switch %s", sw)
	}
	return peer, s.AddPort(name, p, l2.PortConfig{VLAN: v})
}

// Learn sends a broadcast from each source address in turn into p (a
// Probe's end), so that the switch learns them.
func Learn(p *mem.Port, srcs ...frame.MAC) {
	for _, src := range srcs {
		f := append(append(append([]byte(nil), frame.Broadcast[:]...), src[:]...), 0x08, 0x00)
		f = append(f, make([]byte, 46)...)
		for n, _ := p.Write([][]byte{f}, []int{0}); n == 0; n, _ = p.Write([][]byte{f}, []int{0}) {
			time.Sleep(time.Millisecond) // the switch's reader has not caught up
		}
	}
}

// Kernel is an in-memory kernel data path: it keeps the switches and
// ports it is given; counters are zero and the MAC table holds the
// adapters' static entries.
type Kernel struct {
	mu       sync.Mutex
	switches map[string]bool
	ports    map[string]kdp.PortConfig
	reads    int // MACTable calls
}

// TableReads says how often the MAC table was read whole.
func (k *Kernel) TableReads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reads
}

// SetSwitch implements daemon.KernelPath.
func (k *Kernel) SetSwitch(name string, _ time.Duration, _ int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.switches == nil {
		k.switches, k.ports = map[string]bool{}, map[string]kdp.PortConfig{}
	}
	k.switches[name] = true
	return nil
}

// AddPort implements daemon.KernelPath.
func (k *Kernel) AddPort(ifname string, cfg kdp.PortConfig) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.switches[cfg.Switch] {
		return fmt.Errorf("no switch %s", cfg.Switch)
	}
	k.ports[ifname] = cfg
	return nil
}

// SetPort implements daemon.KernelPath.
func (k *Kernel) SetPort(ifname string, cfg kdp.PortConfig) error { return k.AddPort(ifname, cfg) }

// RemovePort implements daemon.KernelPath.
func (k *Kernel) RemovePort(ifname string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.ports, ifname)
	return nil
}

// SetStatic implements daemon.KernelPath.
func (k *Kernel) SetStatic(string, frame.MAC, string) error { return nil }

// RemoveStatic implements daemon.KernelPath.
func (k *Kernel) RemoveStatic(string, frame.MAC) error { return nil }

// RemoveSwitch implements daemon.KernelPath.
func (k *Kernel) RemoveSwitch(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.switches, name)
	return nil
}

// Prune implements daemon.KernelPath.
func (k *Kernel) Prune(switches, ports map[string]bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for name := range k.ports {
		if !ports[name] {
			delete(k.ports, name)
		}
	}
	for name := range k.switches {
		if !switches[name] {
			delete(k.switches, name)
		}
	}
	return nil
}

// Counters implements daemon.KernelPath.
func (k *Kernel) Counters(ifname string) (kdp.Counters, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.ports[ifname]; !ok {
		return kdp.Counters{}, kdp.ErrNotAttached
	}
	return kdp.Counters{}, nil
}

// MACTable implements daemon.KernelPath.
func (k *Kernel) MACTable(name string) ([]kdp.Entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	var out []kdp.Entry
	for ifname, c := range k.ports {
		if c.Switch == name && !c.MAC.IsZero() {
			out = append(out, kdp.Entry{MAC: c.MAC, Port: ifname, Static: true})
		}
	}
	return out, nil
}

// ControllerWithKernel is Controller with a kernel data path.
func ControllerWithKernel(st *store.Store, b *Backend, h Host, r *Runner, k *Kernel) *daemon.Controller {
	return daemon.NewController(daemon.Deps{Store: st, Backend: b, Host: h, Runner: r, Kernel: k, Log: slog.New(slog.DiscardHandler)})
}
