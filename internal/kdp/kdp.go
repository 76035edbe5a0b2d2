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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/vlan"
)

// MaxPorts is how many ports one switch may have on the kernel path (the
// program's member list holds this many; its flood walks it with bpf_loop).
const MaxPorts = 1024

// The program's member list is MaxPorts long: a build fails otherwise.
var _ = [1]struct{}{}[len(kdpSw{}.Ifindex)-MaxPorts]

// maxCounterSlots bounds the ports of all switches (the counters map).
const maxCounterSlots = 4096

// maxPortLimit bounds a port's own MAC limit: the whole table's default.
const maxPortLimit = 1 << 24

// MaxSwitches is how many switches the kernel path holds (the program's
// switches and learned maps).
const MaxSwitches = 1024

// TotalTableSize bounds the learned entries of all switches together (the
// program's MAC table) unless Options.FDBSize says otherwise; no switch
// may have a larger table.
const TotalTableSize = 1 << 20

// DefaultTableSize bounds a switch's learned entries when SetSwitch is
// given 0: the core's default (l2.DefaultFDBSize).
const DefaultTableSize = 65536

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
// by l2.DropReason's numbers (runt 1 ... port error 11, too big 13).
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
	// FDBSize bounds the MAC table of all switches together; TotalTableSize
	// if 0. Memory is taken for the entries there are, not for the bound.
	// (Each switch also has a bound of its own: SetSwitch.)
	FDBSize int
	// PinDir, if set, is a directory on a BPF filesystem (mounted there if
	// it is not one) where the maps and the ports' links are pinned: the
	// program keeps forwarding when the Datapath is closed or its process
	// ends, and the next Open takes the switches and ports over as they
	// are. Without it, Close detaches the program from every port.
	PinDir string
	// OnMove, if set, is told of every station the program saw move
	// between ports (on a goroutine of its own; it must not block long,
	// nor call the Datapath). The program counts moves either way.
	OnMove func(Move)
	// Clsact attaches the program to ports as a tc filter on a clsact
	// qdisc, which is what a kernel without tcx (before 6.6) gets anyway.
	// The default is tcx.
	Clsact bool
}

// DefaultPinDir is where vswitchd pins the kernel data path.
const DefaultPinDir = "/sys/fs/bpf/vswitch"

// Datapath is the loaded program and its maps. Its methods are safe for
// concurrent use.
type Datapath struct {
	mu       sync.Mutex
	ns       string
	pinDir   string
	pinned   bool // the maps are pinned in pinDir
	objs     kdpObjects
	ports    map[string]*port // by interface name
	nums     map[string]uint32
	switches map[uint32]*kdpSw
	statics  map[uint32]map[kdpFdbKey]bool // the static entries that point to each interface
	staticOf map[kdpFdbKey]uint32          // and the interface of each
	free     []uint32                      // counter slots given back
	next     uint32                        // the next counter slot never used
	closed   bool
	clsact   bool // ports get the program as a clsact filter (Options.Clsact, or no tcx here)

	moves     *ringbuf.Reader // the program's move and full-switch records
	movesDone chan struct{}   // closed when the reader's goroutine ends
	sweepNow  chan struct{}   // a switch is full: sweep at once
	resched   chan struct{}   // a switch's ageing changed: the sweeper times its next sweep again
	stop      chan struct{}   // closed by Close
	sweepDone chan struct{}   // closed when the sweeper ends
}

type port struct {
	ifindex int
	slot    uint32
	cfg     PortConfig
	link    link.Link // nil: taken over from a pinned map, attached again by AddPort
}

// PortConfig is a port's place and model on the kernel path.
type PortConfig struct {
	Switch     string    // the switch's name
	VLAN       vlan.Port // its 802.1Q model (vlan.Untagged etc.; never the zero value)
	MAC        frame.MAC // an adapter's MAC: a static entry on every VLAN of the port
	SpoofGuard bool      // drop frames whose source is not MAC
	Group      uint8     // split-horizon group (l2.PortConfig.Group); 0: none
	MACLimit   int       // learned entries the port may have (l2.PortConfig.MACLimit); 0: only its switch's limit
}

// ErrNotAttached is a port the datapath does not have.
var ErrNotAttached = errors.New("not a port of the kernel data path")

// Open loads the program and creates its maps, or with PinDir takes over
// the pinned ones and what they hold.
func Open(o Options) (*Datapath, error) {
	spec, err := loadKdp()
	if err != nil {
		return nil, err
	}
	spec.Maps["fdb"].MaxEntries = uint32(TotalTableSize)
	if o.FDBSize > 0 {
		spec.Maps["fdb"].MaxEntries = uint32(o.FDBSize)
	}
	d := &Datapath{ns: o.Namespace, pinDir: o.PinDir, clsact: o.Clsact, ports: map[string]*port{}, nums: map[string]uint32{}, switches: map[uint32]*kdpSw{},
		statics: map[uint32]map[kdpFdbKey]bool{}, staticOf: map[kdpFdbKey]uint32{}}
	var co *ebpf.CollectionOptions
	if d.pinDir != "" {
		if err := ensureBPFFS(d.pinDir); err != nil {
			return nil, err
		}
		// Take over what an earlier process pinned; pin nothing before
		// the first switch (SetSwitch), so that an unused data path
		// leaves nothing behind.
		if _, err := os.Stat(filepath.Join(d.pinDir, "switches")); err == nil {
			for _, m := range spec.Maps {
				m.Pinning = ebpf.PinByName
			}
			co = &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: d.pinDir}}
		}
	}
	err = spec.LoadAndAssign(&d.objs, co)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// Pinned by another version of the program: start afresh.
		d.unpinAll()
		err = spec.LoadAndAssign(&d.objs, co)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading the kernel data path: %+v", ve)
		}
		return nil, fmt.Errorf("loading the kernel data path: %w", err)
	}
	d.pinned = co != nil
	if d.pinned {
		if err := d.takeOver(); err != nil {
			d.objs.Close()
			return nil, err
		}
	}
	d.sweepNow, d.resched, d.stop, d.sweepDone = make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	if err := d.reportMoves(o.OnMove); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("reading the kernel data path's moves: %w", err)
	}
	go d.sweeper()
	return d, nil
}

// takeOver reads the switches and ports that the pinned maps hold.
func (d *Datapath) takeOver() error {
	var num uint32
	var s kdpSw
	names := map[uint32]string{}
	for it := d.objs.Switches.Iterate(); it.Next(&num, &s); {
		sw := s
		d.switches[num] = &sw
		names[num] = cString(sw.Name[:])
		d.nums[names[num]] = num
	}
	used := map[uint32]bool{}
	var ifi uint32
	var kp kdpPort
	var gone []uint32
	for it := d.objs.Ports.Iterate(); it.Next(&ifi, &kp); {
		i, err := d.iface(func() (*net.Interface, error) { return net.InterfaceByIndex(int(ifi)) })
		swName, ok := names[kp.Sw]
		if err != nil || !ok {
			gone = append(gone, ifi)
			continue
		}
		p := &port{ifindex: int(ifi), slot: kp.Id, cfg: PortConfig{Switch: swName, MAC: kp.Mac, SpoofGuard: kp.Guard != 0, Group: kp.Group,
			MACLimit: int(kp.Limit)}}
		p.cfg.VLAN.PVID, p.cfg.VLAN.Admit = frame.VID(kp.Pvid), vlan.Admit(kp.Admit)
		if l, err := link.LoadPinnedLink(d.linkPin(int(ifi)), nil); err == nil {
			if d.clsact || l.Update(d.objs.Ingress) != nil { // to this version of the program
				l.Unpin() // detached: AddPort attaches this version (as a clsact filter if so asked now)
				l.Close()
			} else {
				p.link = l
			}
		} else if !d.clsact {
			d.detachClsact(int(ifi)) // attached as a clsact filter before: AddPort attaches on tcx
		}
		d.ports[i.Name] = p
		used[kp.Id] = true
		d.next = max(d.next, kp.Id+1)
	}
	var sk kdpFdbKey
	var sv kdpFdbVal
	for it := d.objs.Statics.Iterate(); it.Next(&sk, &sv); {
		d.indexStatic(sk, sv.Ifindex)
	}
	for _, ifi := range gone {
		os.Remove(d.linkPin(int(ifi)))
		d.objs.Ports.Delete(ifi)
		d.forgetEntries(ifi)
		d.dropMember(ifi)
	}
	for i := range d.next {
		if !used[i] {
			d.free = append(d.free, i)
		}
	}
	return nil
}

// Close lets go of the program and the maps. Without PinDir the program
// is detached from every port; with it, it goes on forwarding.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	d.mu.Unlock() // the reader and the sweeper take mu
	d.moves.Close()
	<-d.movesDone
	close(d.stop)
	<-d.sweepDone
	d.mu.Lock()
	for name, p := range d.ports {
		switch {
		case p.link != nil:
			errs = append(errs, p.link.Close()) // detaches it unless pinned
		case d.clsact && d.pinDir == "":
			errs = append(errs, d.detachClsact(p.ifindex)) // a filter outlives its process: gone with the Datapath
		}
		delete(d.ports, name)
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// SetSwitch makes or changes a switch: its MAC table entries age after
// ageing (300 s if 0), and it learns at most tableSize of them
// (DefaultTableSize if 0); a new station past that is not learned (its
// frames are flooded) until aged entries are swept.
func (d *Datapath) SetSwitch(name string, ageing time.Duration, tableSize int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(name) > 15 {
		return fmt.Errorf("switch %q: a name of at most 15 bytes", name)
	}
	if ageing <= 0 {
		ageing = 300 * time.Second
	}
	if tableSize <= 0 {
		tableSize = DefaultTableSize
	}
	num, ok := d.nums[name]
	if !ok {
		for num = 1; d.switches[num] != nil; num++ {
		}
		if num > MaxSwitches {
			return fmt.Errorf("switch %s: the kernel data path takes at most %d switches", name, MaxSwitches)
		}
		// No port of a switch of this number is left, nor an entry:
		// its learned count starts at 0.
		if err := d.objs.Learned.Put(2*num, uint64(0)); err != nil {
			return err
		}
		if err := d.objs.Learned.Put(2*num+1, uint64(0)); err != nil {
			return err
		}
		d.nums[name] = num
		d.switches[num] = &kdpSw{}
		for i := range len(name) {
			d.switches[num].Name[i] = int8(name[i])
		}
	}
	s := d.switches[num]
	if s.Ageing != uint64(ageing) {
		select {
		case d.resched <- struct{}{}:
		default:
		}
	}
	s.Ageing, s.Limit = uint64(ageing), uint64(tableSize)
	if err := d.objs.Switches.Put(num, s); err != nil {
		return err
	}
	if d.pinDir != "" && !d.pinned {
		return d.pinMaps()
	}
	return nil
}

// AddPort puts the interface ifname on its switch (which SetSwitch made)
// and attaches the program to it. A port that is there already is
// reconfigured (and attached again if it was taken over without its link).
func (d *Datapath) AddPort(ifname string, cfg PortConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.ports[ifname]; p != nil {
		if err := d.setLocked(p, cfg); err != nil {
			return err
		}
		if p.link == nil { // taken over: this version of the program is attached (a clsact filter's replaced)
			return d.attach(ifname, p)
		}
		return nil
	}
	num, ok := d.nums[cfg.Switch]
	if !ok {
		return fmt.Errorf("port %s: switch %s: %w", ifname, cfg.Switch, ErrNotAttached)
	}
	s := d.switches[num]
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
	if err := d.objs.Switches.Put(num, s); err != nil {
		return err
	}
	if err := d.attach(ifname, p); err != nil {
		d.unlink(p)
		return err
	}
	d.ports[ifname] = p
	return nil
}

// attach attaches the program at tcx ingress of a port (pinning the link
// with PinDir), or as its clsact ingress filter where the kernel has no
// tcx (or Options.Clsact says so).
func (d *Datapath) attach(ifname string, p *port) error {
	if !d.clsact {
		err := nsrun.In(nsrun.Path(d.ns), func() (err error) {
			p.link, err = link.AttachTCX(link.TCXOptions{Interface: p.ifindex, Program: d.objs.Ingress, Attach: ebpf.AttachTCXIngress})
			return err
		})
		if errors.Is(err, ebpf.ErrNotSupported) {
			d.clsact = true // a kernel before tcx: clsact for every port from now on
		} else if err != nil {
			return fmt.Errorf("attach the kernel data path to %s: %w", ifname, err)
		}
	}
	if d.clsact {
		return d.withNetlink(func(h *netlink.Handle) error {
			if err := h.QdiscAdd(clsactQdisc(p.ifindex)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("attach the kernel data path to %s: add a clsact qdisc: %w", ifname, err)
			}
			f := clsactFilter(p.ifindex)
			f.Fd, f.Name, f.DirectAction = d.objs.Ingress.FD(), "vswitch", true
			if err := h.FilterReplace(f); err != nil { // replaces the program of an earlier process in place
				return fmt.Errorf("attach the kernel data path to %s: %w", ifname, err)
			}
			return nil
		})
	}
	if d.pinDir != "" {
		path := d.linkPin(p.ifindex)
		os.Remove(path) // a link pinned for an earlier device of this index
		if err := p.link.Pin(path); err != nil {
			p.link.Close()
			p.link = nil
			return fmt.Errorf("pin the link of %s: %w", ifname, err)
		}
	}
	return nil
}

// The program's filter on a clsact qdisc: its own priority at ingress.
const clsactPriority = 0x7673 // "vs"

func clsactQdisc(ifindex int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{QdiscType: "clsact", QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
}

func clsactFilter(ifindex int) *netlink.BpfFilter {
	return &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: 1, Protocol: unix.ETH_P_ALL, Priority: clsactPriority}}
}

// detachClsact deletes the program's clsact filter from a port, if it has
// it, and then the clsact qdisc when no filter of anyone is left on it. A
// device that is gone took both with it.
func (d *Datapath) detachClsact(ifindex int) error {
	return d.withNetlink(func(h *netlink.Handle) error {
		l, err := h.LinkByIndex(ifindex)
		if err != nil {
			return nil // gone
		}
		if err := h.FilterDel(clsactFilter(ifindex)); errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
			return nil // not ours to detach: the qdisc, if any, is left alone
		} else if err != nil {
			return fmt.Errorf("detach the kernel data path from %s: %w", l.Attrs().Name, err)
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			if fs, err := h.FilterList(l, parent); err != nil || len(fs) > 0 {
				return nil // another's filters: the qdisc stays
			}
		}
		if err := h.QdiscDel(clsactQdisc(ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("remove the clsact qdisc of %s: %w", l.Attrs().Name, err)
		}
		return nil
	})
}

// withNetlink runs fn with a netlink handle in the datapath's namespace.
func (d *Datapath) withNetlink(fn func(*netlink.Handle) error) error {
	h, err := nsrun.Netlink(nsrun.Path(d.ns))
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// SetPort changes a port's model and forgets the stations it learned, as
// the core's SetPort does: they are learned again under the new model.
func (d *Datapath) SetPort(ifname string, cfg PortConfig) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.ports[ifname]
	if p == nil {
		return fmt.Errorf("port %s: %w", ifname, ErrNotAttached)
	}
	if err := d.setLocked(p, cfg); err != nil {
		return err
	}
	d.deleteLearned(d.learnedOn(uint32(p.ifindex)), nil)
	return nil
}

func (d *Datapath) setLocked(p *port, cfg PortConfig) error {
	if p.cfg.Switch != "" && p.cfg.Switch != cfg.Switch {
		return fmt.Errorf("a port cannot change switches (%s to %s): remove it first", p.cfg.Switch, cfg.Switch)
	}
	num, ok := d.nums[cfg.Switch]
	if !ok {
		return fmt.Errorf("switch %s: %w", cfg.Switch, ErrNotAttached)
	}
	if cfg.MACLimit < 0 || cfg.MACLimit > maxPortLimit {
		return fmt.Errorf("port MAC limit %d: 0 (none of its own) to %d", cfg.MACLimit, maxPortLimit)
	}
	kp := kdpPort{Sw: num, Id: p.slot, Pvid: uint16(cfg.VLAN.PVID), Admit: uint8(cfg.VLAN.Admit), Mac: cfg.MAC, Group: cfg.Group,
		Limit: uint32(cfg.MACLimit)}
	if cfg.SpoofGuard {
		kp.Guard = 1
	}
	kp.Member = cfg.VLAN.Member.Words()
	kp.Untagged = cfg.VLAN.Untagged.Words()
	if err := d.objs.Ports.Put(uint32(p.ifindex), &kp); err != nil {
		return err
	}
	if p.cfg.MAC != cfg.MAC && !p.cfg.MAC.IsZero() {
		d.deleteStatic(fdbKey(num, 0, p.cfg.MAC))
	}
	if !cfg.MAC.IsZero() {
		if err := d.putStatic(fdbKey(num, 0, cfg.MAC), uint32(p.ifindex)); err != nil {
			return err
		}
	}
	p.cfg = cfg
	return nil
}

// SetStatic makes mac a static entry of port ifname on every VLAN of
// switch sw: a station behind the port (a QEMU socket the core serves
// behind a join) that no other port may take.
func (d *Datapath) SetStatic(sw string, mac frame.MAC, ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	num, ok := d.nums[sw]
	p := d.ports[ifname]
	if !ok || p == nil {
		return fmt.Errorf("static %s on %s/%s: %w", mac, sw, ifname, ErrNotAttached)
	}
	return d.putStatic(fdbKey(num, 0, mac), uint32(p.ifindex))
}

// putStatic makes k a static entry of interface ifi; d.mu is held.
func (d *Datapath) putStatic(k kdpFdbKey, ifi uint32) error {
	if err := d.objs.Statics.Put(k, &kdpFdbVal{Ifindex: ifi, IsStatic: 1}); err != nil {
		return err
	}
	d.indexStatic(k, ifi)
	return nil
}

// indexStatic notes that the static entry k points to ifi (and no longer
// to another interface); d.mu is held.
func (d *Datapath) indexStatic(k kdpFdbKey, ifi uint32) {
	d.unindexStatic(k)
	if d.statics[ifi] == nil {
		d.statics[ifi] = map[kdpFdbKey]bool{}
	}
	d.statics[ifi][k], d.staticOf[k] = true, ifi
}

// unindexStatic forgets where the static entry k points; d.mu is held.
func (d *Datapath) unindexStatic(k kdpFdbKey) {
	if old, ok := d.staticOf[k]; ok {
		delete(d.statics[old], k)
		delete(d.staticOf, k)
	}
}

// deleteStatic removes the static entry k; d.mu is held.
func (d *Datapath) deleteStatic(k kdpFdbKey) error {
	d.unindexStatic(k)
	if err := d.objs.Statics.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// RemoveStatic forgets a static entry that SetStatic made.
func (d *Datapath) RemoveStatic(sw string, mac frame.MAC) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if num, ok := d.nums[sw]; ok {
		return d.deleteStatic(fdbKey(num, 0, mac))
	}
	return nil
}

// RemovePort detaches the program from a port and forgets it, with the
// MAC table entries that point to it.
func (d *Datapath) RemovePort(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removeLocked(ifname)
}

func (d *Datapath) removeLocked(ifname string) error {
	p := d.ports[ifname]
	if p == nil {
		return nil
	}
	var err error
	switch {
	case d.clsact:
		err = d.detachClsact(p.ifindex)
	case p.link != nil:
		if d.pinDir != "" {
			p.link.Unpin()
		}
		err = p.link.Close()
	case d.pinDir != "":
		os.Remove(d.linkPin(p.ifindex)) // a pin taken over without its link
	}
	d.unlink(p)
	delete(d.ports, ifname)
	return err
}

// unlink takes a port out of its switch, the ports map and the MAC table.
func (d *Datapath) unlink(p *port) {
	d.dropMember(uint32(p.ifindex))
	d.objs.Ports.Delete(uint32(p.ifindex))
	d.forgetEntries(uint32(p.ifindex))
	d.free = append(d.free, p.slot)
}

// dropMember takes an interface out of its switch's member list.
func (d *Datapath) dropMember(ifi uint32) {
	for num, s := range d.switches {
		n := len(slices.DeleteFunc(s.Ifindex[:s.N], func(i uint32) bool { return i == ifi }))
		if uint32(n) != s.N {
			clear(s.Ifindex[n:])
			s.N = uint32(n)
			d.objs.Switches.Put(num, s)
		}
	}
}

// forgetEntries deletes the MAC table entries that point to an interface:
// its static ones as indexed, its learned ones found in one read of the
// table; d.mu is held.
func (d *Datapath) forgetEntries(ifi uint32) {
	for k := range d.statics[ifi] {
		d.objs.Statics.Delete(k)
		delete(d.staticOf, k)
	}
	delete(d.statics, ifi)
	d.deleteLearned(d.learnedOn(ifi), nil)
}

// learnedOn returns the keys of the learned entries that point to an
// interface.
func (d *Datapath) learnedOn(ifi uint32) []kdpFdbKey {
	return d.learnedWhere(func(_ *kdpFdbKey, v *kdpFdbVal) bool { return v.Ifindex == ifi })
}

// learnedWhere returns the keys of the learned entries for which match
// holds, found in one read of the table.
func (d *Datapath) learnedWhere(match func(*kdpFdbKey, *kdpFdbVal) bool) []kdpFdbKey {
	var keys []kdpFdbKey
	eachEntry(d.objs.Fdb, func(k *kdpFdbKey, v *kdpFdbVal) {
		if match(k, v) {
			keys = append(keys, *k)
		}
	})
	return keys
}

// eachEntry calls fn with every entry of a MAC table map, read in batches
// (one system call for thousands of entries; entry by entry where the
// kernel has no batches).
func eachEntry(m *ebpf.Map, fn func(*kdpFdbKey, *kdpFdbVal)) error {
	const batch = 4096 // more than any hash bucket holds, as batches need
	keys, vals := make([]kdpFdbKey, batch), make([]kdpFdbVal, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil // the end
		case errors.Is(err, ebpf.ErrNotSupported) && n == 0:
			var k kdpFdbKey
			var v kdpFdbVal
			it := m.Iterate()
			for it.Next(&k, &v) {
				fn(&k, &v)
			}
			return it.Err()
		case err != nil:
			return err
		}
	}
}

// RemoveSwitch forgets a switch whose ports are gone. With PinDir, when
// the last switch goes the pinned maps go too: nothing is left behind.
func (d *Datapath) RemoveSwitch(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removeSwitchLocked(name)
}

func (d *Datapath) removeSwitchLocked(name string) error {
	for pn, p := range d.ports {
		if p.cfg.Switch == name {
			return fmt.Errorf("switch %s still has port %s", name, pn)
		}
	}
	num, ok := d.nums[name]
	if !ok {
		return nil
	}
	delete(d.nums, name)
	delete(d.switches, num)
	if err := d.objs.Switches.Delete(num); err != nil {
		return err
	}
	// Its learned entries (none should be left: its ports' went with
	// them), so that a switch that gets its number starts with none.
	for _, k := range d.learnedWhere(func(k *kdpFdbKey, _ *kdpFdbVal) bool { return k.Sw == num }) {
		d.objs.Fdb.Delete(k)
	}
	if len(d.nums) == 0 && d.pinned {
		d.unpinAll()
		d.pinned = false
	}
	return nil
}

// Prune removes every port and switch the caller does not name: what a
// pinned data path kept for switches that went while no one ran it.
func (d *Datapath) Prune(switches, ports map[string]bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for name := range d.ports {
		if !ports[name] {
			errs = append(errs, d.removeLocked(name))
		}
	}
	for name := range d.nums {
		if !switches[name] {
			errs = append(errs, d.removeSwitchLocked(name))
		}
	}
	if len(d.nums) == 0 && d.pinned {
		d.unpinAll()
		d.pinned = false
	}
	return errors.Join(errs...)
}

// pinMaps pins the maps in pinDir (again, after the last switch went).
func (d *Datapath) pinMaps() error {
	for name, m := range d.objs.maps() {
		if err := m.Pin(filepath.Join(d.pinDir, name)); err != nil {
			return fmt.Errorf("pin the map %s: %w", name, err)
		}
	}
	d.pinned = true
	return nil
}

// unpinAll removes the data path's pins in pinDir (maps and links).
func (d *Datapath) unpinAll() {
	entries, _ := os.ReadDir(d.pinDir)
	maps := d.objs.maps()
	for _, e := range entries {
		if n := e.Name(); maps[n] != nil || strings.HasPrefix(n, "link-") {
			os.Remove(filepath.Join(d.pinDir, n))
		}
	}
}

// maps are the program's maps by the names they are pinned as (the
// names in bpf/kdp.c); only their names are used before they are loaded.
func (o *kdpObjects) maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{"ports": o.Ports, "switches": o.Switches, "fdb": o.Fdb, "statics": o.Statics,
		"counters": o.Counters, "moves": o.Moves, "learned": o.Learned, "portlearned": o.Portlearned}
}

func (d *Datapath) linkPin(ifindex int) string {
	return filepath.Join(d.pinDir, fmt.Sprintf("link-%d", ifindex))
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
	var sum [nctr]uint64
	for _, cpu := range per {
		for i, n := range cpu {
			sum[i] += n
		}
	}
	c := Counters{RxPackets: sum[ctrRxPackets], RxBytes: sum[ctrRxBytes], TxPackets: sum[ctrTxPackets], TxBytes: sum[ctrTxBytes],
		Floods: sum[ctrFloods], LearnRefused: sum[ctrLearnRefused], Moves: sum[ctrMoves]}
	copy(c.Drops[:], sum[ctrDrops:])
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
func (d *Datapath) MACTable(name string) ([]Entry, error) {
	d.mu.Lock()
	byIndex := map[uint32]string{}
	for pn, p := range d.ports {
		byIndex[uint32(p.ifindex)] = pn
	}
	sw, ok := d.nums[name]
	ageing := 300 * time.Second
	if ok {
		ageing = time.Duration(d.switches[sw].Ageing)
	}
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("switch %s: %w", name, ErrNotAttached)
	}
	now, err := monotonicNow()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, m := range []*ebpf.Map{d.objs.Statics, d.objs.Fdb} {
		if err := eachEntry(m, func(k *kdpFdbKey, v *kdpFdbVal) {
			name, ok := byIndex[v.Ifindex]
			if k.Sw != sw || !ok {
				return
			}
			e := Entry{VID: frame.VID(k.Vid), MAC: k.Mac, Port: name, Static: v.IsStatic != 0}
			if !e.Static {
				if aged(v, now, uint64(ageing)) {
					return
				}
				if v.Seen < now { // else seen since now was read
					e.Age = time.Duration(now - v.Seen)
				}
			}
			out = append(out, e)
		}); err != nil {
			return nil, err
		}
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

// iface runs an interface look-up in the datapath's namespace.
func (d *Datapath) iface(look func() (*net.Interface, error)) (i *net.Interface, err error) {
	err = nsrun.In(nsrun.Path(d.ns), func() error {
		i, err = look()
		return err
	})
	return i, err
}

// ifindex looks an interface's index up by name: one netlink request for
// that name (net.InterfaceByName reads every interface's, which is slow
// among thousands).
func (d *Datapath) ifindex(name string) (int, error) {
	h, err := nsrun.Netlink(nsrun.Path(d.ns))
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("port %s: %w", name, err)
	}
	return l.Attrs().Index, nil
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

// clearCounters zeroes a slot that an earlier port may have used: its
// counters and its count of learned entries.
func (d *Datapath) clearCounters(slot uint32) error {
	if err := d.objs.Portlearned.Put(2*slot, uint64(0)); err != nil {
		return err
	}
	if err := d.objs.Portlearned.Put(2*slot+1, uint64(0)); err != nil {
		return err
	}
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

// cString is a NUL-terminated name.
func cString(b []int8) string {
	var out []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// ensureBPFFS makes dir a directory on a BPF filesystem: under
// /sys/fs/bpf (mounted there first if it is not mounted), or a BPF
// filesystem mounted on dir itself.
func ensureBPFFS(dir string) error {
	isBPF := func(path string) bool {
		var st unix.Statfs_t
		return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
	}
	const root = "/sys/fs/bpf"
	if strings.HasPrefix(dir, root+"/") && !isBPF(root) {
		if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount a BPF filesystem on %s: %w", root, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !isBPF(dir) {
		if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount a BPF filesystem on %s: %w", dir, err)
		}
	}
	return nil
}
