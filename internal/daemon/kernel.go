package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
)

// KernelPath is the kernel data path (kdp.Datapath) as the daemon drives
// it: switches by name, ports by their switch-side interface name.
type KernelPath interface {
	SetSwitch(name string, ageing time.Duration) error
	AddPort(ifname string, cfg kdp.PortConfig) error
	SetPort(ifname string, cfg kdp.PortConfig) error
	RemovePort(ifname string) error
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

// kernelConfig is a port's model for the kernel data path.
func kernelConfig(sw string, c l2.PortConfig) kdp.PortConfig {
	return kdp.PortConfig{Switch: sw, VLAN: c.VLAN, MAC: c.MAC, SpoofGuard: c.SpoofGuard}
}

// createKernel makes a switch on the kernel data path; d.mu is held.
func (d *Daemon) createKernel(wp *switchPlan) (*liveSwitch, error) {
	if d.kern == nil {
		return nil, ErrNoKernelPath
	}
	if err := d.kern.SetSwitch(wp.opts.Name, wp.opts.Ageing); err != nil {
		return nil, err
	}
	return &liveSwitch{opts: wp.opts, kernel: true, ports: map[string]*portPlan{}, ifnames: map[string]string{}}, nil
}

// closeKernel forgets a kernel switch whose ports are gone; d.mu is held.
func (d *Daemon) closeKernel(ls *liveSwitch) error {
	return d.kern.RemoveSwitch(ls.opts.Name)
}

// removePortOf takes a port off its switch on either data path.
func (d *Daemon) removePortOf(ls *liveSwitch, pn string) error {
	if !ls.kernel {
		ls.sw.RemovePort(pn)
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
	return d.kern.SetPort(ls.ifnames[pn], kernelConfig(ls.opts.Name, want.cfg))
}

// openPortOn makes a port's host object and puts it on its switch, on
// either data path.
func (d *Daemon) openPortOn(ls *liveSwitch, pn string, want *portPlan) *StepError {
	sw := ls.opts.Name
	if !ls.kernel {
		p, err := hostStep(d, portKey(want.spec), func() (l2.Port, error) { return d.backend.Open(want.spec) },
			func(p l2.Port) { p.Close() }) // still recorded: the next converge opens it again, or the sweep removes it
		if err != nil {
			return &StepError{Switch: sw, Port: pn, Step: "open " + want.spec.Kind, Err: err}
		}
		if err := ls.sw.AddPort(pn, p, want.cfg); err != nil { // AddPort closes p on error
			return &StepError{Switch: sw, Port: pn, Step: "attach", Err: err}
		}
		return nil
	}
	ifname, err := hostStep(d, portKey(want.spec), func() (string, error) { return d.backend.OpenDevice(want.spec) }, nil)
	if err != nil {
		return &StepError{Switch: sw, Port: pn, Step: "make the device of " + want.spec.Kind, Err: err}
	}
	if err := d.kern.AddPort(ifname, kernelConfig(ls.opts.Name, want.cfg)); err != nil {
		return &StepError{Switch: sw, Port: pn, Step: "attach the kernel data path", Err: err}
	}
	ls.ifnames[pn] = ifname
	return nil
}

// kernelView is a kernel switch as reads see it.
type kernelView struct {
	kern    KernelPath
	name    string
	ports   map[string]string // port name → switch-side interface
	configs map[string]l2.PortConfig
}

func (d *Daemon) kernelView(ls *liveSwitch) *kernelView {
	v := &kernelView{kern: d.kern, name: ls.opts.Name, ports: make(map[string]string, len(ls.ifnames)),
		configs: make(map[string]l2.PortConfig, len(ls.ifnames))}
	for pn, ifname := range ls.ifnames {
		v.ports[pn] = ifname
		v.configs[pn] = ls.ports[pn].cfg
	}
	return v
}

// Ports implements LiveSwitch: the program's counters, by port name.
func (v *kernelView) Ports() []l2.PortInfo {
	var out []l2.PortInfo
	for pn, ifname := range v.ports {
		c, err := v.kern.Counters(ifname)
		if err != nil {
			continue
		}
		var lc l2.Counters
		lc.RxPackets, lc.RxBytes, lc.TxPackets, lc.TxBytes = c.RxPackets, c.RxBytes, c.TxPackets, c.TxBytes
		lc.Floods, lc.LearnRefused, lc.Moves = c.Floods, c.LearnRefused, c.Moves
		copy(lc.Drops[:], c.Drops[:])
		out = append(out, l2.PortInfo{Name: pn, Config: v.configs[pn], Counters: lc})
	}
	slices.SortFunc(out, func(a, b l2.PortInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// MACPage implements LiveSwitch. The kernel's table is read whole (it is
// bounded by the data path's table size) and paged here.
func (v *kernelView) MACPage(after l2.MACCursor, limit int, f l2.MACFilter) ([]l2.MACEntry, bool, error) {
	byIf := make(map[string]string, len(v.ports))
	for pn, ifname := range v.ports {
		byIf[ifname] = pn
	}
	if f.Port != "" && v.ports[f.Port] == "" {
		return nil, false, fmt.Errorf("MAC table of port %q: %w", f.Port, l2.ErrNotFound)
	}
	es, err := v.kern.MACTable(v.name)
	if err != nil {
		return nil, false, err
	}
	avid, amac, started := after.Pos()
	var out []l2.MACEntry
	for _, e := range es {
		if started && (e.VID < avid || e.VID == avid && slices.Compare(e.MAC[:], amac[:]) <= 0) {
			continue
		}
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

// SuppressedMoves implements LiveSwitch: the program reports no moves yet.
func (v *kernelView) SuppressedMoves() uint64 { return 0 }

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
