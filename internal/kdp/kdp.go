// Package kdp is vswitch's kernel data path: the switch of internal/l2
// done by an eBPF program (bpf/kdp.c) at tc ingress of every port that is
// a kernel device, so that frames between kernel devices never leave the
// kernel. The program classifies, checks the source, learns and forwards
// with the same port model (internal/vlan) and rules as the userspace
// core, which stays the reference: the tests run both on the same frames
// and compare what every port receives.
//
// A Datapath holds the program and its maps for the ports of one network
// namespace (where vswitchd's host side lives): the ports' 802.1Q models,
// each switch's members, one MAC table keyed by (switch, VLAN, MAC) with
// the adapters' static entries, and per-port counters.
package kdp

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/vlan"
)

// MaxPorts is how many ports one switch may have on the kernel path (the
// program's flood loop is bounded by it).
const MaxPorts = 64

// maxCounterSlots bounds the ports of all switches (the counters map).
const maxCounterSlots = 4096

// Counter slots of a port, in the program's order.
const (
	ctrRxPackets = iota
	ctrRxBytes
	ctrTxPackets
	ctrTxBytes
	ctrFloods
	ctrLearnRefused
	ctrMoves
	ctrDrops
	nctr = ctrDrops + NumDropReasons
)

// NumDropReasons is the size of Counters.Drops: the program counts drops
// by l2.DropReason's numbers (runt 1 ... port error 11).
const NumDropReasons = 16

// Counters are one port's counters as the program keeps them, summed over
// CPUs; Drops is indexed by l2.DropReason.
type Counters struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	Floods, LearnRefused, Moves            uint64
	Drops                                  [NumDropReasons]uint64
}

// Options configure Open.
type Options struct {
	// Namespace is where the ports are (an nsrun.Path spec); "" is the
	// caller's.
	Namespace string
	// FDBSize bounds the MAC table of all switches together; 262,144 if 0.
	FDBSize int
}

// Datapath is the loaded program and its maps. Its methods are safe for
// concurrent use.
type Datapath struct {
	mu       sync.Mutex
	ns       string
	objs     kdpObjects
	ports    map[string]*port // by interface name
	switches map[uint32]*kdpSw
	free     []uint32 // counter slots given back
	next     uint32   // the next counter slot never used
	closed   bool
}

type port struct {
	ifindex int
	slot    uint32
	cfg     PortConfig
	link    link.Link
}

// PortConfig is a port's place and model on the kernel path.
type PortConfig struct {
	Switch     uint32    // the switch's number
	VLAN       vlan.Port // its 802.1Q model (vlan.Untagged etc.; never the zero value)
	MAC        frame.MAC // an adapter's MAC: a static entry on every VLAN of the port
	SpoofGuard bool      // drop frames whose source is not MAC
}

// ErrNotAttached is a port the datapath does not have.
var ErrNotAttached = errors.New("not a port of the kernel data path")

// Open loads the program and creates its maps.
func Open(o Options) (*Datapath, error) {
	spec, err := loadKdp()
	if err != nil {
		return nil, err
	}
	if o.FDBSize > 0 {
		spec.Maps["fdb"].MaxEntries = uint32(o.FDBSize)
	}
	d := &Datapath{ns: o.Namespace, ports: map[string]*port{}, switches: map[uint32]*kdpSw{}}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading the kernel data path: %+v", ve)
		}
		return nil, fmt.Errorf("loading the kernel data path: %w", err)
	}
	return d, nil
}

// Close detaches the program from every port and frees the maps.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for name, p := range d.ports {
		errs = append(errs, p.link.Close())
		delete(d.ports, name)
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// SetSwitch makes or changes a switch: its MAC table entries age after
// ageing (300 s if 0).
func (d *Datapath) SetSwitch(sw uint32, ageing time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ageing <= 0 {
		ageing = 300 * time.Second
	}
	s := d.switches[sw]
	if s == nil {
		s = &kdpSw{}
		d.switches[sw] = s
	}
	s.Ageing = uint64(ageing)
	return d.objs.Switches.Put(sw, s)
}

// AddPort puts the interface ifname on its switch (which SetSwitch made)
// and attaches the program to it. A port that is there already is
// reconfigured.
func (d *Datapath) AddPort(ifname string, cfg PortConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.ports[ifname]; p != nil {
		return d.setLocked(p, cfg)
	}
	s := d.switches[cfg.Switch]
	if s == nil {
		return fmt.Errorf("port %s: switch %d: %w", ifname, cfg.Switch, ErrNotAttached)
	}
	if s.N >= MaxPorts {
		return fmt.Errorf("port %s: the kernel data path takes at most %d ports per switch", ifname, MaxPorts)
	}
	ifi, err := d.ifindex(ifname)
	if err != nil {
		return err
	}
	slot, err := d.slot()
	if err != nil {
		return err
	}
	p := &port{ifindex: ifi, slot: slot}
	if err := d.clearCounters(slot); err != nil {
		d.free = append(d.free, slot)
		return err
	}
	if err := d.setLocked(p, cfg); err != nil {
		d.free = append(d.free, slot)
		return err
	}
	s.Ifindex[s.N] = uint32(ifi)
	s.N++
	if err := d.objs.Switches.Put(cfg.Switch, s); err != nil {
		return err
	}
	err = nsrun.In(nsrun.Path(d.ns), func() (err error) {
		p.link, err = link.AttachTCX(link.TCXOptions{Interface: ifi, Program: d.objs.Ingress, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		d.unlink(p)
		return fmt.Errorf("attach the kernel data path to %s: %w", ifname, err)
	}
	d.ports[ifname] = p
	return nil
}

// SetPort changes a port's model.
func (d *Datapath) SetPort(ifname string, cfg PortConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.ports[ifname]
	if p == nil {
		return fmt.Errorf("port %s: %w", ifname, ErrNotAttached)
	}
	return d.setLocked(p, cfg)
}

func (d *Datapath) setLocked(p *port, cfg PortConfig) error {
	if p.cfg.Switch != cfg.Switch && p.link != nil {
		return fmt.Errorf("a port cannot change switches (%d to %d): remove it first", p.cfg.Switch, cfg.Switch)
	}
	kp := kdpPort{Sw: cfg.Switch, Id: p.slot, Pvid: uint16(cfg.VLAN.PVID), Admit: uint8(cfg.VLAN.Admit), Mac: cfg.MAC}
	if cfg.SpoofGuard {
		kp.Guard = 1
	}
	kp.Member = cfg.VLAN.Member.Words()
	kp.Untagged = cfg.VLAN.Untagged.Words()
	if err := d.objs.Ports.Put(uint32(p.ifindex), &kp); err != nil {
		return err
	}
	if p.cfg.MAC != cfg.MAC && !p.cfg.MAC.IsZero() {
		d.objs.Fdb.Delete(fdbKey(p.cfg.Switch, 0, p.cfg.MAC))
	}
	if !cfg.MAC.IsZero() {
		if err := d.objs.Fdb.Put(fdbKey(cfg.Switch, 0, cfg.MAC), &kdpFdbVal{Ifindex: uint32(p.ifindex), IsStatic: 1}); err != nil {
			return err
		}
	}
	p.cfg = cfg
	return nil
}

// RemovePort detaches the program from a port and forgets it, with the
// MAC table entries that point to it.
func (d *Datapath) RemovePort(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.ports[ifname]
	if p == nil {
		return nil
	}
	err := p.link.Close()
	d.unlink(p)
	delete(d.ports, ifname)
	return err
}

// unlink takes a port out of its switch, the ports map and the MAC table.
func (d *Datapath) unlink(p *port) {
	if s := d.switches[p.cfg.Switch]; s != nil {
		ifs := slices.DeleteFunc(s.Ifindex[:s.N], func(i uint32) bool { return i == uint32(p.ifindex) })
		n := uint32(len(ifs))
		clear(s.Ifindex[n:])
		s.N = n
		d.objs.Switches.Put(p.cfg.Switch, s)
	}
	d.objs.Ports.Delete(uint32(p.ifindex))
	var k kdpFdbKey
	var v kdpFdbVal
	var gone []kdpFdbKey
	for it := d.objs.Fdb.Iterate(); it.Next(&k, &v); {
		if v.Ifindex == uint32(p.ifindex) {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		d.objs.Fdb.Delete(k)
	}
	d.free = append(d.free, p.slot)
}

// RemoveSwitch forgets a switch whose ports are gone.
func (d *Datapath) RemoveSwitch(sw uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, p := range d.ports {
		if p.cfg.Switch == sw {
			return fmt.Errorf("switch %d still has port %s", sw, name)
		}
	}
	delete(d.switches, sw)
	return d.objs.Switches.Delete(sw)
}

// Counters returns a port's counters, summed over CPUs.
func (d *Datapath) Counters(ifname string) (Counters, error) {
	d.mu.Lock()
	p := d.ports[ifname]
	d.mu.Unlock()
	if p == nil {
		return Counters{}, fmt.Errorf("port %s: %w", ifname, ErrNotAttached)
	}
	var per [][nctr]uint64 // one set per CPU
	if err := d.objs.Counters.Lookup(p.slot, &per); err != nil {
		return Counters{}, err
	}
	var c Counters
	for i := range nctr {
		var n uint64
		for _, cpu := range per {
			n += cpu[i]
		}
		switch {
		case i >= ctrDrops:
			c.Drops[i-ctrDrops] = n
		default:
			*[...]*uint64{&c.RxPackets, &c.RxBytes, &c.TxPackets, &c.TxBytes, &c.Floods, &c.LearnRefused, &c.Moves}[i] = n
		}
	}
	return c, nil
}

// Entry is a row of the MAC table.
type Entry struct {
	VID    frame.VID // 0: a static entry on every VLAN of the port
	MAC    frame.MAC
	Port   string
	Static bool
	Age    time.Duration
}

// MACTable returns a switch's live entries, sorted by VLAN and MAC.
func (d *Datapath) MACTable(sw uint32) ([]Entry, error) {
	d.mu.Lock()
	byIndex := map[uint32]string{}
	for name, p := range d.ports {
		byIndex[uint32(p.ifindex)] = name
	}
	ageing := time.Duration(300 * time.Second)
	if s := d.switches[sw]; s != nil {
		ageing = time.Duration(s.Ageing)
	}
	d.mu.Unlock()
	now, err := monotonicNow()
	if err != nil {
		return nil, err
	}
	var out []Entry
	var k kdpFdbKey
	var v kdpFdbVal
	it := d.objs.Fdb.Iterate()
	for it.Next(&k, &v) {
		name, ok := byIndex[v.Ifindex]
		if k.Sw != sw || !ok {
			continue
		}
		e := Entry{VID: frame.VID(k.Vid), MAC: k.Mac, Port: name, Static: v.IsStatic != 0}
		if !e.Static {
			e.Age = time.Duration(now - v.Seen)
			if e.Age >= ageing {
				continue
			}
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if a.VID != b.VID {
			return int(a.VID) - int(b.VID)
		}
		return slices.Compare(a.MAC[:], b.MAC[:])
	})
	return out, nil
}

func fdbKey(sw uint32, vid frame.VID, mac frame.MAC) kdpFdbKey {
	return kdpFdbKey{Sw: sw, Vid: uint16(vid), Mac: mac}
}

// ifindex looks an interface up in the datapath's namespace.
func (d *Datapath) ifindex(name string) (int, error) {
	var ifi int
	err := nsrun.In(nsrun.Path(d.ns), func() error {
		i, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		ifi = i.Index
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("port %s: %w", name, err)
	}
	return ifi, nil
}

// slot returns a free counter slot.
func (d *Datapath) slot() (uint32, error) {
	if n := len(d.free); n > 0 {
		s := d.free[n-1]
		d.free = d.free[:n-1]
		return s, nil
	}
	if d.next >= maxCounterSlots {
		return 0, fmt.Errorf("the kernel data path takes at most %d ports", maxCounterSlots)
	}
	d.next++
	return d.next - 1, nil
}

// clearCounters zeroes a slot that an earlier port may have used.
func (d *Datapath) clearCounters(slot uint32) error {
	return d.objs.Counters.Put(slot, make([][nctr]uint64, ebpf.MustPossibleCPU()))
}

// monotonicNow is bpf_ktime_get_ns's clock, now.
func monotonicNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Nano()), nil
}
