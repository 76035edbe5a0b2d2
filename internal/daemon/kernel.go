package daemon

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/vlan"
)

// KernelPath is the kernel data path (kdp.Datapath) as the daemon drives
// it: switches by name, ports by their switch-side interface name.
type KernelPath interface {
	SetSwitch(name string, ageing time.Duration, tableSize int) error
	AddPort(ifname string, cfg kdp.PortConfig) error
	SetPort(ifname string, cfg kdp.PortConfig) error
	RemovePort(ifname string) error
	// SetStatic and RemoveStatic keep a QEMU socket adapter's MAC static
	// on the join, as the core keeps it on the adapter's port.
	SetStatic(sw string, mac frame.MAC, ifname string) error
	RemoveStatic(sw string, mac frame.MAC) error
	RemoveSwitch(name string) error
	// Prune removes the switches and ports not named (what a pinned data
	// path kept for switches that went while vswitchd was not running).
	Prune(switches, ports map[string]bool) error
	Counters(ifname string) (kdp.Counters, error)
	MACTable(name string) ([]kdp.Entry, error)
}

// ErrNoKernelPath is a switch on the kernel data path where there is none.
var ErrNoKernelPath = errors.New("the kernel data path is not available")

// LiveSwitch is what reads see of a running switch, on either data path.
// *l2.Switch is one.
type LiveSwitch interface {
	Ports() []l2.PortInfo
	MACPage(after l2.MACCursor, limit int, filter l2.MACFilter) ([]l2.MACEntry, bool, error)
	SuppressedMoves() uint64
}

// SetKernelPath gives the daemon the kernel data path (nil: none, and a
// switch that asks for it fails with ErrNoKernelPath); call it before the
// first Apply.
func (d *Daemon) SetKernelPath(k KernelPath) {
	d.mu.Lock()
	d.kern = k
	d.mu.Unlock()
}

// A switch on the kernel data path may have the table that validation
// lets it have: config's bound is the program's.
var _ = [1]struct{}{}[kdp.TotalTableSize-config.MaxKernelTableSize]

// kernelConfig is a port's model for the kernel data path.
func kernelConfig(sw string, c l2.PortConfig) kdp.PortConfig {
	return kdp.PortConfig{Switch: sw, VLAN: c.VLAN, MAC: c.MAC, SpoofGuard: c.SpoofGuard, Group: c.Group, MACLimit: c.MACLimit}
}

// createKernel makes a switch on the kernel data path; d.mu is held.
func (d *Daemon) createKernel(wp *switchPlan) (*liveSwitch, error) {
	if d.kern == nil {
		return nil, ErrNoKernelPath
	}
	if err := d.kern.SetSwitch(wp.opts.Name, wp.opts.Ageing, wp.opts.FDBSize); err != nil {
		return nil, err
	}
	return &liveSwitch{opts: wp.opts, kernel: true, ports: map[string]*portPlan{}, ifnames: map[string]string{}}, nil
}

// closeKernel forgets a kernel switch whose ports are gone, and its
// join, move limiter and MAC table snapshot; d.mu is held.
func (d *Daemon) closeKernel(ls *liveSwitch) error {
	d.kmoves.Delete(ls.opts.Name)
	d.kfdb.Delete(ls.opts.Name)
	var errs []error
	if ls.core != nil {
		ls.core.Close()
		errs = append(errs, d.closeJoin(ls.opts.Name, ls.ifnames[KindJoin]))
		delete(ls.ifnames, KindJoin)
		ls.core = nil
	}
	return errors.Join(append(errs, d.kern.RemoveSwitch(ls.opts.Name))...)
}

// socketKind reports whether a port is a QEMU socket: on a kernel switch
// the joined core serves it.
func socketKind(kind string) bool {
	return kind == string(config.AttachQEMUStream) || kind == string(config.AttachQEMUDgram)
}

// joinSpec is the join of a kernel switch (KindJoin).
func joinSpec(sw string) PortSpec {
	h := sha256.Sum256([]byte(sw + "/join"))
	return PortSpec{Switch: sw, Name: KindJoin, Kind: KindJoin, Device: "vj" + hex.EncodeToString(h[:])[:12], Kernel: true}
}

// joinVLAN is the join's model on both sides: every VLAN, tagged, so that
// each frame crosses with the VLAN it was classified into.
var joinVLAN = func() vlan.Port {
	p, _ := vlan.Trunk(frame.MustParseVLANSet("1-4094"), 0)
	return p
}()

// ensureJoin gives a kernel switch its core and the join between them.
func (d *Daemon) ensureJoin(ls *liveSwitch) error {
	if ls.core != nil {
		return nil
	}
	js := joinSpec(ls.opts.Name)
	if err := d.own([]PortSpec{js}); err != nil {
		return err
	}
	o := ls.opts
	o.Logger, o.Poller = d.log, d.poller
	core, err := l2.New(o)
	if err != nil {
		return err
	}
	ifname, err := hostStep(d, portKey(js), func() (string, error) { return d.backend.OpenDevice(js) }, nil)
	if err == nil {
		err = d.kern.AddPort(ifname, kdp.PortConfig{Switch: ls.opts.Name, VLAN: joinVLAN})
	}
	var p l2.Port
	if err == nil {
		p, err = hostStep(d, portKey(js)+"/core", func() (l2.Port, error) { return d.backend.Open(js) }, func(p l2.Port) { p.Close() })
	}
	if err == nil {
		err = core.AddPort(KindJoin, p, l2.PortConfig{VLAN: joinVLAN})
	}
	if err != nil {
		core.Close()
		d.closeJoin(ls.opts.Name, ifname)
		return fmt.Errorf("join the kernel data path to the core for QEMU sockets: %w", err)
	}
	ls.core, ls.ifnames[KindJoin] = core, ifname
	return nil
}

// closeJoin takes a kernel switch's join down.
func (d *Daemon) closeJoin(sw, ifname string) error {
	var errs []error
	if ifname != "" {
		errs = append(errs, d.kern.RemovePort(ifname))
	}
	errs = append(errs, d.remove(joinSpec(sw)))
	return errors.Join(errs...)
}

// removePortOf takes a port off its switch on either data path.
func (d *Daemon) removePortOf(ls *liveSwitch, pn string) error {
	if !ls.kernel {
		ls.sw.RemovePort(pn)
		return nil
	}
	if p := ls.ports[pn]; socketKind(p.spec.Kind) {
		ls.core.RemovePort(pn)
		if !p.cfg.MAC.IsZero() {
			return d.kern.RemoveStatic(ls.opts.Name, p.cfg.MAC)
		}
		return nil
	}
	err := d.kern.RemovePort(ls.ifnames[pn])
	delete(ls.ifnames, pn)
	return err
}

// setPortOf changes a port's model on either data path.
func (d *Daemon) setPortOf(ls *liveSwitch, pn string, want *portPlan) error {
	if !ls.kernel {
		return ls.sw.SetPort(pn, want.cfg)
	}
	if socketKind(want.spec.Kind) {
		return ls.core.SetPort(pn, want.cfg)
	}
	return d.kern.SetPort(ls.ifnames[pn], kernelConfig(ls.opts.Name, want.cfg))
}

// openPortOn makes a port's host object and puts it on its switch, on
// either data path; what was made but could not be attached is removed.
func (d *Daemon) openPortOn(ls *liveSwitch, pn string, want *portPlan) error {
	sw := ls.opts.Name
	fail := func(step string, err error) *StepError { return &StepError{Switch: sw, Port: pn, Step: step, Err: err} }
	switch {
	case !ls.kernel:
		return d.openOnCore(ls.sw, pn, want)
	case socketKind(want.spec.Kind): // on the core joined to the kernel switch
		if err := d.ensureJoin(ls); err != nil {
			return fail("join the core", err)
		}
		if err := d.openOnCore(ls.core, pn, want); err != nil {
			return err
		}
		if !want.cfg.MAC.IsZero() {
			if err := d.kern.SetStatic(sw, want.cfg.MAC, ls.ifnames[KindJoin]); err != nil {
				ls.core.RemovePort(pn)
				return errors.Join(fail("keep its MAC static on the kernel data path", err), d.remove(want.spec))
			}
		}
		return nil
	}
	ifname, err := hostStep(d, portKey(want.spec), func() (string, error) { return d.backend.OpenDevice(want.spec) }, nil)
	if err != nil {
		return fail("make the device of "+want.spec.Kind, err)
	}
	if err := d.kern.AddPort(ifname, kernelConfig(ls.opts.Name, want.cfg)); err != nil {
		return errors.Join(fail("attach the kernel data path", err), d.remove(want.spec))
	}
	ls.ifnames[pn] = ifname
	return nil
}

// openOnCore opens a port's host object and adds it to a core switch.
func (d *Daemon) openOnCore(core *l2.Switch, pn string, want *portPlan) error {
	p, err := hostStep(d, portKey(want.spec), func() (l2.Port, error) { return d.backend.Open(want.spec) },
		func(p l2.Port) { p.Close() }) // still recorded: the next converge opens it again, or the sweep removes it
	if err != nil {
		return &StepError{Switch: want.spec.Switch, Port: pn, Step: "open " + want.spec.Kind, Err: err}
	}
	if err := core.AddPort(pn, p, want.cfg); err != nil { // AddPort closes p on error
		return errors.Join(&StepError{Switch: want.spec.Switch, Port: pn, Step: "attach", Err: err}, d.remove(want.spec))
	}
	return nil
}

// TunnelCounting is a backend that reads a VXLAN device's own counters:
// on the kernel data path the tunnel port's backend counters, as the core's
// tunnel port has them.
type TunnelCounting interface {
	TunnelCounters(dev string) map[string]uint64
}

// kernelView is a kernel switch as reads see it.
type kernelView struct {
	kern    KernelPath
	tunnels TunnelCounting // nil: the backend cannot read them
	core    *l2.Switch     // its QEMU sockets' ports; nil: none
	name    string
	ports   map[string]string // port name → switch-side interface
	configs map[string]l2.PortConfig
	moves   *l2.MoveLimiter // its move reports' limit
	fdb     *fdbSnapshot    // its MAC table's last read, for paging
}

func (d *Daemon) kernelView(ls *liveSwitch) *kernelView {
	tc, _ := d.backend.(TunnelCounting)
	v := &kernelView{kern: d.kern, tunnels: tc, core: ls.core, name: ls.opts.Name, ports: make(map[string]string, len(ls.ifnames)),
		configs: make(map[string]l2.PortConfig, len(ls.ifnames)), moves: d.moveLimitOf(ls.opts.Name), fdb: d.fdbSnapshotOf(ls.opts.Name)}
	for pn, ifname := range ls.ifnames {
		if pn != KindJoin {
			v.ports[pn] = ifname
			v.configs[pn] = ls.ports[pn].cfg
		}
	}
	return v
}

// KernelCounters are a kernel port's counters as the core's (the program
// numbers its drop reasons as l2.DropReason does).
func KernelCounters(c kdp.Counters) l2.Counters {
	var lc l2.Counters
	lc.RxPackets, lc.RxBytes, lc.TxPackets, lc.TxBytes = c.RxPackets, c.RxBytes, c.TxPackets, c.TxBytes
	lc.Floods, lc.LearnRefused, lc.Moves = c.Floods, c.LearnRefused, c.Moves
	copy(lc.Drops[:], c.Drops[:])
	return lc
}

// Ports implements LiveSwitch: the program's counters, by port name.
func (v *kernelView) Ports() []l2.PortInfo {
	var out []l2.PortInfo
	for pn, ifname := range v.ports {
		c, err := v.kern.Counters(ifname)
		if err != nil {
			continue
		}
		pi := l2.PortInfo{Name: pn, Config: v.configs[pn], Counters: KernelCounters(c)}
		if pn == KindTunnel && v.tunnels != nil {
			pi.Backend = v.tunnels.TunnelCounters(ifname)
		}
		out = append(out, pi)
	}
	if v.core != nil {
		for _, p := range v.core.Ports() {
			if p.Name != KindJoin {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b l2.PortInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// MACPage implements LiveSwitch. The kernel's table is read whole (it is
// bounded by the data path's table size) and paged here.
func (v *kernelView) MACPage(after l2.MACCursor, limit int, f l2.MACFilter) ([]l2.MACEntry, bool, error) {
	if f.Port != "" && v.ports[f.Port] == "" && (v.core == nil || !hasPort(v.core, f.Port)) {
		return nil, false, fmt.Errorf("MAC table of port %q: %w", f.Port, l2.ErrNotFound)
	}
	avid, amac, started := after.Pos()
	es, byIf, err := v.table(started)
	if err != nil {
		return nil, false, err
	}
	i := 0
	if started { // the first row after the cursor
		i, _ = slices.BinarySearchFunc(es, after, func(e kdp.Entry, _ l2.MACCursor) int {
			return cmp.Or(cmp.Compare(e.VID, avid), slices.Compare(e.MAC[:], amac[:]), -1)
		})
		for i < len(es) && es[i].VID == avid && es[i].MAC == amac {
			i++
		}
	}
	var out []l2.MACEntry
	for _, e := range es[i:] {
		pn, ok := byIf[e.Port]
		if !ok || f.ByVLAN && e.VID != f.VLAN || !f.MAC.IsZero() && e.MAC != f.MAC || f.Port != "" && pn != f.Port {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		out = append(out, l2.MACEntry{FDBEntry: l2.FDBEntry{VID: e.VID, MAC: e.MAC, Static: e.Static, Age: e.Age}, PortName: pn})
	}
	return out, false, nil
}

// fdbSnapshot is a kernel switch's MAC table as one read left it, sorted
// by VLAN and MAC, with the port names of its interfaces: the pages of one
// listing are cut from it, not each from a read of the whole shared table.
type fdbSnapshot struct {
	mu   sync.Mutex
	at   time.Time
	es   []kdp.Entry
	byIf map[string]string
}

// snapshotFresh is how long a listing's later pages use its first page's read.
const snapshotFresh = 10 * time.Second

// table returns the switch's MAC table: read anew for a listing's first
// page, or the read of its first page for the next ones (while fresh).
func (v *kernelView) table(next bool) ([]kdp.Entry, map[string]string, error) {
	sn := v.fdb
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if next && sn.es != nil && time.Since(sn.at) < snapshotFresh {
		return sn.es, sn.byIf, nil
	}
	byIf := make(map[string]string, len(v.ports))
	for pn, ifname := range v.ports {
		byIf[ifname] = pn
	}
	es, err := v.kern.MACTable(v.name)
	if err != nil {
		return nil, nil, err
	}
	if v.core != nil { // the sockets' stations, as the core learned them (not through the join)
		for cur := (l2.MACCursor{}); ; {
			rows, more, err := v.core.MACPage(cur, 10000, l2.MACFilter{})
			if err != nil {
				return nil, nil, err
			}
			for _, r := range rows {
				if r.PortName == KindJoin {
					continue
				}
				byIf["core:"+r.PortName] = r.PortName
				es = append(es, kdp.Entry{VID: r.VID, MAC: r.MAC, Port: "core:" + r.PortName, Static: r.Static, Age: r.Age})
			}
			if !more || len(rows) == 0 {
				break
			}
			last := rows[len(rows)-1]
			cur = l2.CursorAfter(last.VID, last.MAC)
		}
	}
	slices.SortFunc(es, func(a, b kdp.Entry) int {
		return cmp.Or(cmp.Compare(a.VID, b.VID), slices.Compare(a.MAC[:], b.MAC[:]))
	})
	sn.at, sn.es, sn.byIf = time.Now(), es, byIf
	return es, byIf, nil
}

// SuppressedMoves implements LiveSwitch: moves the program saw and the
// daemon did not log, over the limit (KernelMove).
func (v *kernelView) SuppressedMoves() uint64 { return v.moves.Suppressed() }

// pruneKernel tells the kernel data path which switches and ports are the
// daemon's now; d.mu is held.
func (d *Daemon) pruneKernel() error {
	if d.kern == nil {
		return nil
	}
	switches, ports := map[string]bool{}, map[string]bool{}
	for name, ls := range d.switches {
		if !ls.kernel {
			continue
		}
		switches[name] = true
		for _, ifname := range ls.ifnames {
			ports[ifname] = true
		}
	}
	return d.kern.Prune(switches, ports)
}

// hasPort reports whether a core switch has a port.
func hasPort(sw *l2.Switch, name string) bool {
	_, err := sw.Counters(name)
	return err == nil
}
