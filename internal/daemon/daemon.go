// Package daemon is vswitchd's engine: it converges the running switches
// and ports to the desired state (config), declaratively and idempotently.
// The OS side of ports (TAPs, packet sockets, QEMU sockets) sits behind a
// small Backend, so the convergence logic is tested against a fake.
package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/errtree"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/tap"
)

// Backend opens the OS side of ports and removes it.
type Backend interface {
	// Open makes, or re-attaches to, what spec names and returns it as a
	// port for the switch, which owns it from then on. An error that wraps
	// ErrNotYet says the port's place (its namespace) does not exist yet.
	Open(spec PortSpec) (l2.Port, error)
	// Remove deletes what Open made for spec (a TAP device, a socket file)
	// once the switch has closed the port; what is already gone is not an
	// error. It is not called when the daemon stops, so that workloads
	// keep their devices and addresses across a restart.
	Remove(spec PortSpec) error
	// OpenDevice makes, or finds, the kernel device of a port on the
	// kernel data path (a veth pair for a namespace's adapter and for the
	// host adapter, a persistent TAP for QEMU, the NIC itself) and returns
	// the name of its switch-side interface where the host side lives.
	// Remove deletes what it made.
	OpenDevice(spec PortSpec) (string, error)
	// SaveIdentity reads a NIC's identity (addresses, routes, MAC, MTU,
	// IPv6 setting) in a form the daemon keeps in its store before the
	// host adapter of an external switch takes it over.
	SaveIdentity(nic string) ([]byte, error)
	// TakeOver moves the saved identity from the NIC to the host adapter,
	// all or nothing, and says how long the host had no address; with no
	// host adapter ("": the management OS is not allowed) it takes the
	// identity off the NIC. Called again after a crash half-way, it
	// finishes the move.
	TakeOver(nic, hostAdapter string, saved []byte) (time.Duration, error)
	// SetPeers makes a tunnel device flood to exactly these endpoints.
	SetPeers(device string, peers []netip.Addr) error
	// GiveBack moves it from the host adapter back to the NIC, or, if the
	// host adapter is gone or was "", gives the NIC what was saved (nil:
	// nothing saved, only a live move).
	GiveBack(hostAdapter, nic string, saved []byte) error
}

// ErrNotYet marks a port whose place does not exist yet (a namespace not
// made yet): the adapter is kept and retried, not refused.
var ErrNotYet = errors.New("not there yet")

// StepError is one thing Apply could not do: which switch and port (empty
// for the switch itself), which step, and why.
type StepError struct {
	Switch, Port, Step string
	Err                error
}

func (e *StepError) Error() string {
	if e.Port == "" {
		return fmt.Sprintf("switch %s: %s: %v", e.Switch, e.Step, e.Err)
	}
	return fmt.Sprintf("switch %s port %s: %s: %v", e.Switch, e.Port, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// StepErrors returns the StepErrors inside an error from Apply.
func StepErrors(err error) []*StepError { return errtree.All[*StepError](err) }

// Daemon holds the live switches. Its methods are safe for concurrent use.
//
// Reads (Switch, PortState, Describe) never wait for an Apply: they see
// the view the last Apply published, so a slow host step cannot stall a
// MAC table or counter read.
type Daemon struct {
	mu       sync.Mutex // one Apply at a time; guards everything below but view
	backend  Backend
	rec      Records
	recs     map[string][]byte // the records, as last read or written; nil until the first Apply
	log      *slog.Logger
	switches map[string]*liveSwitch
	running  func(vm string) bool // which VMs that vswitchd runs are up; nil: none
	poller   l2.Poller            // the switches' forwarding threads; nil: a goroutine per port
	kern     KernelPath           // the kernel data path; nil: none
	timeout  time.Duration        // the deadline of one host step
	busy     map[string]bool      // host steps that timed out and have not returned yet
	overlay  *Overlay             // spanning switches' tunnels; nil: none (a single host)
	handover map[string]bool      // record keys of devices another host of the cluster now has

	view   atomic.Pointer[view] // what readers see
	kmoves sync.Map             // switch name → *l2.MoveLimiter: the kernel data path's move reports
	kfdb   sync.Map             // switch name → *fdbSnapshot: its MAC table, paged
}

// view is what the last Apply left running, for readers.
type view struct {
	switches map[string]*viewSwitch
	problems map[[2]string]*StepError // {switch, port} → what the last Apply could not do
}

type viewSwitch struct {
	sw LiveSwitch
	up map[string]bool // the ports that are up
}

// SetPoller gives the switches made from now on forwarding threads that
// read their TAP, AF_PACKET and QEMU socket ports (l2.Options.Poller);
// call it before
// the first Apply.
func (d *Daemon) SetPoller(p l2.Poller) {
	d.mu.Lock()
	d.poller = p
	d.mu.Unlock()
}

// SetRunning tells the daemon which of the VMs it runs are up: their
// adapters exist only then.
func (d *Daemon) SetRunning(f func(vm string) bool) {
	d.mu.Lock()
	d.running = f
	d.mu.Unlock()
}

type liveSwitch struct {
	opts     l2.Options
	sw       *l2.Switch        // on the userspace core
	kernel   bool              // on the kernel data path
	core     *l2.Switch        // kernel: the core that serves its QEMU sockets, joined to it; nil: none
	ifnames  map[string]string // kernel: port name → switch-side interface
	ports    map[string]*portPlan
	tookOver string       // the NIC whose identity was taken, if any
	holder   string       // the host adapter that holds it ("": taken off, held by none)
	peers    []netip.Addr // spanning: the endpoints its tunnel floods to, as last set
}

// SetHandover names the host objects (record keys) that adapters now on
// another host of the cluster use: a port that goes is closed, its device
// kept for that host (a namespace VM that moved).
func (d *Daemon) SetHandover(keys map[string]bool) {
	d.mu.Lock()
	d.handover = keys
	d.mu.Unlock()
}

// HandoverKeys returns the record keys of the devices that adapters on
// other hosts than host use and that another host can take over: a
// namespace adapter's TAP on the userspace core lives wholly in the
// namespace (on the kernel path, its veth has an end in the old host).
// kernel says which hosts have the kernel data path (where an auto
// switch's adapters are veths).
func HandoverKeys(all *config.Config, host string, kernel map[string]bool) map[string]bool {
	hostOf := map[string]string{}
	for _, vm := range all.VMs {
		hostOf[vm.Name] = vm.Host
	}
	out := map[string]bool{}
	for i := range all.Adapters {
		a := &all.Adapters[i]
		sw := all.Switch(a.Switch)
		if hostOf[a.VM] == host || a.Attachment.Kind != config.AttachNetns || sw == nil || sw.OnKernel(kernel[hostOf[a.VM]]) {
			continue
		}
		spec := PortSpec{Kind: string(config.AttachNetns), Namespace: a.Attachment.Namespace, Device: cmp.Or(a.Attachment.Device, tap.DefaultName)}
		out[spec.key()] = true
	}
	return out
}

// SetOverlay sets what the next Apply gives spanning switches.
func (d *Daemon) SetOverlay(o *Overlay) {
	d.mu.Lock()
	d.overlay = o
	d.mu.Unlock()
}

// New returns a daemon with nothing running that keeps its records of
// host objects in rec (nil: in memory only, for tests).
func New(b Backend, rec Records, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.Default()
	}
	if rec == nil {
		rec = &MemRecords{}
	}
	d := &Daemon{backend: b, rec: rec, log: log, switches: map[string]*liveSwitch{}, timeout: DefaultHostTimeout}
	d.view.Store(&view{})
	return d
}

// Apply converges to c, which must be valid, and returns what it changed
// (nothing: no change). A port that fails does not stop the others: the
// failures come back joined, and the next Apply tries them again.
func (d *Daemon) Apply(c *config.Config) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	want, err := plan(c, d.running, d.overlay, d.kern != nil)
	if err != nil {
		return nil, err
	}
	if err := d.loadRecords(); err != nil {
		return nil, err
	}
	var changes []string
	var errs []error
	note := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		changes = append(changes, msg)
		d.log.Info(msg)
	}
	wanted := map[string]*PortSpec{} // record key → the port that wants that host object
	for _, wp := range want {
		for _, p := range wp.ports {
			if k := p.spec.key(); k != "" {
				wanted[k] = &p.spec
			}
		}
	}
	// Switches that went away or must be rebuilt with other options.
	rebuilt := map[string]bool{}
	for _, name := range sortedKeys(d.switches) {
		ls := d.switches[name]
		wp, keep := want[name]
		if keep && sameOptions(ls.opts, wp.opts) && ls.kernel == wp.kernel {
			continue
		}
		if err := d.giveBack(ls, note); err != nil {
			// Tearing down would take the host's addresses with the host
			// adapter: keep the switch until the identity is back.
			errs = append(errs, err)
			continue
		}
		for _, pn := range sortedKeys(ls.ports) {
			p := ls.ports[pn]
			if err := d.removePortOf(ls, pn); err != nil {
				errs = append(errs, &StepError{Switch: name, Port: pn, Step: "detach the kernel data path", Err: err})
			}
			np, ok := wp.portIfAny(pn)
			w := wanted[p.spec.key()]
			if (!keep || !ok || !sameDevice(np.spec, p.spec)) && (w == nil || !movedDevice(p.spec, *w)) {
				errs = append(errs, d.remove(p.spec))
			}
		}
		if ls.kernel {
			if err := d.closeKernel(ls); err != nil {
				errs = append(errs, &StepError{Switch: name, Step: "remove from the kernel data path", Err: err})
			}
		} else {
			ls.sw.Close()
		}
		delete(d.switches, name)
		if keep {
			rebuilt[name] = true
			note("rebuild switch %s (options changed)", name)
		} else {
			note("remove switch %s", name)
		}
	}
	var converging []string
	for _, name := range sortedKeys(want) {
		wp := want[name]
		ls := d.switches[name]
		if ls == nil {
			var err error
			if wp.kernel {
				ls, err = d.createKernel(wp)
			} else {
				o := wp.opts
				o.Logger, o.Poller = d.log, d.poller
				var sw *l2.Switch
				if sw, err = l2.New(o); err == nil {
					ls = &liveSwitch{opts: wp.opts, sw: sw, ports: map[string]*portPlan{}}
				}
			}
			if err != nil {
				errs = append(errs, &StepError{Switch: name, Step: "create", Err: err})
				continue
			}
			d.switches[name] = ls
			if !rebuilt[name] {
				note("add switch %s", name)
			}
		}
		if ls.tookOver != "" && ls.tookOver != wp.takeOver {
			if err := d.giveBack(ls, note); err != nil { // allowManagementOS off, another NIC, or no longer external
				errs = append(errs, err)
				continue
			}
		}
		errs = append(errs, d.dropPorts(ls, wp, wanted, note)...)
		converging = append(converging, name)
	}
	// Every switch lets go of its departing ports before any opens new
	// ones: a device that moves between switches is never opened by its
	// new switch while its old one still holds it.
	for _, name := range converging {
		ls, wp := d.switches[name], want[name]
		errs = append(errs, d.addPorts(ls, wp, note)...)
		errs = append(errs, d.setPeers(ls, wp, note))
		errs = append(errs, d.takeOver(ls, wp, note))
	}
	errs = append(errs, d.sweep(want, note)...)
	if err := d.pruneKernel(); err != nil {
		errs = append(errs, &StepError{Step: "prune the kernel data path", Err: err})
	}
	err = errors.Join(errs...)
	d.publish(err)
	return changes, err
}

// publish makes what runs now, and what the last Apply could not do
// (err), the view that readers see; d.mu is held.
func (d *Daemon) publish(err error) {
	v := &view{switches: make(map[string]*viewSwitch, len(d.switches)), problems: map[[2]string]*StepError{}}
	for name, ls := range d.switches {
		vs := &viewSwitch{sw: ls.sw, up: make(map[string]bool, len(ls.ports))}
		if ls.kernel {
			vs.sw = d.kernelView(ls)
		}
		for pn := range ls.ports {
			vs.up[pn] = true
		}
		v.switches[name] = vs
	}
	for _, se := range StepErrors(err) {
		if k := [2]string{se.Switch, se.Port}; v.problems[k] == nil {
			v.problems[k] = se
		}
	}
	d.view.Store(v)
}

// PortState says whether a port of a switch is up and, if the last Apply
// could not bring it (or its switch) up, why.
func (d *Daemon) PortState(sw, port string) (up bool, problem *StepError) {
	v := d.view.Load()
	if vs := v.switches[sw]; vs != nil {
		up = vs.up[port]
	}
	if p := v.problems[[2]string{sw, port}]; p != nil {
		return false, p
	}
	if p := v.problems[[2]string{sw, ""}]; p != nil && !up {
		return false, p
	}
	return up, nil
}

// setPeers makes a spanning switch's tunnel flood to the other hosts of
// the switch (head-end replication), once its tunnel is up.
func (d *Daemon) setPeers(ls *liveSwitch, wp *switchPlan, note func(string, ...any)) error {
	t, up := ls.ports[KindTunnel]
	if !up || slices.Equal(ls.peers, wp.peers) && ls.peers != nil {
		return nil
	}
	peers := append([]netip.Addr{}, wp.peers...)
	_, err := hostStep(d, portKey(t.spec), func() (struct{}, error) { return struct{}{}, d.backend.SetPeers(t.spec.Device, peers) }, nil)
	if err != nil {
		return &StepError{Switch: ls.opts.Name, Port: KindTunnel, Step: "set the tunnel's peers", Err: err}
	}
	ls.peers = peers
	note("tunnel of switch %s floods to %d other hosts %v", ls.opts.Name, len(peers), peers)
	return nil
}

// takeOver moves the host's identity from the uplink NIC to the host
// adapter once both are up, or, when the switch does not allow the
// management OS, takes it off the NIC (the NIC is the switch's alone).
func (d *Daemon) takeOver(ls *liveSwitch, wp *switchPlan, note func(string, ...any)) error {
	_, up := ls.ports[KindUplink]
	holder := ""
	if wp.hostHolds {
		host, ok := ls.ports[KindHost]
		if !ok {
			return nil
		}
		holder = host.spec.Device
	}
	if wp.takeOver == "" || !up || ls.tookOver == wp.takeOver && ls.holder == holder {
		return nil
	}
	// A record held by another holder (the management OS was just
	// allowed or disallowed) is given back to the NIC first.
	saved, err := d.saveIdentity(ls.opts.Name, wp.takeOver, holder)
	if err != nil {
		return &StepError{Switch: ls.opts.Name, Port: KindHost, Step: "keep the identity of " + wp.takeOver, Err: err}
	}
	ls.tookOver = ""
	gap, err := hostStep(d, identityPrefix+wp.takeOver, func() (time.Duration, error) {
		return d.backend.TakeOver(wp.takeOver, holder, saved)
	}, nil)
	if err != nil {
		return &StepError{Switch: ls.opts.Name, Port: KindHost, Step: "move host identity from " + wp.takeOver, Err: err}
	}
	ls.tookOver, ls.holder = wp.takeOver, holder
	if holder == "" {
		note("took host identity off %s: switch %s does not allow the management OS, so the host has no path through %s (kept, given back when the switch goes or allows it)",
			wp.takeOver, ls.opts.Name, wp.takeOver)
		return nil
	}
	note("moved host identity %s -> %s (no address for %.2f ms)", wp.takeOver, holder, float64(gap.Microseconds())/1000)
	return nil
}

// giveBack returns the host's identity to the NIC before the host adapter
// or the uplink goes.
func (d *Daemon) giveBack(ls *liveSwitch, note func(string, ...any)) error {
	if ls.tookOver == "" {
		return nil
	}
	if err := d.giveBackTo(ls.opts.Name, ls.holder, ls.tookOver); err != nil {
		return err
	}
	if ls.holder == "" {
		note("gave host identity back to %s", ls.tookOver)
	} else {
		note("moved host identity %s -> %s", ls.holder, ls.tookOver)
	}
	ls.tookOver, ls.holder = "", ""
	return nil
}

func (p *switchPlan) portIfAny(name string) (*portPlan, bool) {
	if p == nil {
		return nil, false
	}
	pp, ok := p.ports[name]
	return pp, ok
}

// sameDevice reports whether two specs name the same host object: a TAP
// that QEMU opens is the same on either data path (a VM keeps it when its
// switch moves between them); other ports are made anew.
func sameDevice(a, b PortSpec) bool {
	if a.Kind == string(config.AttachTAP) {
		a.Kernel, b.Kernel = false, false
	}
	return a == b
}

func sameOptions(a, b l2.Options) bool {
	return a.Name == b.Name && a.DefaultVLAN == b.DefaultVLAN && a.FDBSize == b.FDBSize && a.Ageing == b.Ageing
}

// dropPorts removes and changes the ports of one switch. A port's host
// object that another port now wants (the adapter moved to another
// switch) stays for it.
func (d *Daemon) dropPorts(ls *liveSwitch, wp *switchPlan, wanted map[string]*PortSpec, note func(string, ...any)) []error {
	var errs []error
	sw := ls.opts.Name
	for _, pn := range sortedKeys(ls.ports) {
		have := ls.ports[pn]
		want, ok := wp.ports[pn]
		switch {
		case ok && want.spec == have.spec && want.cfg == have.cfg:
		case ok && want.spec == have.spec:
			if err := d.setPortOf(ls, pn, want); err != nil {
				errs = append(errs, &StepError{Switch: sw, Port: pn, Step: "configure", Err: err})
				continue
			}
			ls.ports[pn] = want
			note("set port %s %s", sw, want)
		default: // gone, or its OS side changed: remove (and re-add below)
			if pn == KindHost || pn == KindUplink {
				if err := d.giveBack(ls, note); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if err := d.removePortOf(ls, pn); err != nil {
				errs = append(errs, &StepError{Switch: sw, Port: pn, Step: "detach the kernel data path", Err: err})
			}
			delete(ls.ports, pn)
			if pn == KindTunnel {
				ls.peers = nil // set again on the new device
			}
			if w := wanted[have.spec.key()]; w == nil || !movedDevice(have.spec, *w) {
				errs = append(errs, d.remove(have.spec))
			}
			note("remove port %s %s", sw, have.spec.Name)
		}
	}
	return errs
}

// movedDevice reports whether a port's host object is the one another
// port now wants: the same device or socket, of the same kind, with only
// its switch or name different.
func movedDevice(have, want PortSpec) bool {
	if have.Switch == want.Switch && have.Name == want.Name {
		return false // the same port, made anew
	}
	have.Switch, have.Name, have.MAC = want.Switch, want.Name, want.MAC
	return sameDevice(have, want)
}

// addPorts opens the ports of one switch that are not up yet.
func (d *Daemon) addPorts(ls *liveSwitch, wp *switchPlan, note func(string, ...any)) []error {
	var errs []error
	sw := ls.opts.Name
	var opening []PortSpec
	for _, pn := range sortedKeys(wp.ports) {
		if _, ok := ls.ports[pn]; !ok {
			opening = append(opening, wp.ports[pn].spec)
		}
	}
	if err := d.own(opening); err != nil { // on disk before anything is made
		return append(errs, &StepError{Switch: sw, Step: "record the ports to make", Err: err})
	}
	for _, pn := range sortedKeys(wp.ports) {
		if _, ok := ls.ports[pn]; ok {
			continue
		}
		want := wp.ports[pn]
		if err := d.openPortOn(ls, pn, want); err != nil {
			errs = append(errs, err)
			continue
		}
		ls.ports[pn] = want
		note("add port %s %s", sw, want)
	}
	return errs
}

func (d *Daemon) remove(spec PortSpec) error {
	if d.handover[spec.key()] { // the adapter's VM moved to another host, which takes its device over
		if err := d.disown(spec.key()); err != nil {
			return &StepError{Switch: spec.Switch, Port: spec.Name, Step: "forget " + spec.Kind, Err: err}
		}
		return nil
	}
	if _, err := hostStep(d, portKey(spec), func() (struct{}, error) { return struct{}{}, d.backend.Remove(spec) }, nil); err != nil {
		return &StepError{Switch: spec.Switch, Port: spec.Name, Step: "remove " + spec.Kind, Err: err}
	}
	if err := d.disown(spec.key()); err != nil {
		return &StepError{Switch: spec.Switch, Port: spec.Name, Step: "forget " + spec.Kind, Err: err}
	}
	return nil
}

// Switch returns a running switch as reads see it, or nil.
func (d *Daemon) Switch(name string) LiveSwitch {
	if vs := d.view.Load().switches[name]; vs != nil {
		return vs.sw
	}
	return nil
}

// CoreSwitch returns a running switch of the userspace core, or nil.
func (d *Daemon) CoreSwitch(name string) *l2.Switch {
	if vs := d.view.Load().switches[name]; vs != nil {
		if sw, ok := vs.sw.(*l2.Switch); ok {
			return sw
		}
	}
	return nil
}

// Describe renders the running switches and ports, one per line, sorted.
// It waits for an Apply in progress.
func (d *Daemon) Describe() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var lines []string
	for _, name := range sortedKeys(d.switches) {
		ls := d.switches[name]
		lines = append(lines, fmt.Sprintf("switch %s vlan=%d", name, ls.opts.DefaultVLAN))
		for _, pn := range sortedKeys(ls.ports) {
			lines = append(lines, "  "+ls.ports[pn].String())
		}
	}
	return strings.Join(lines, "\n")
}

// Close stops every switch and closes its ports; devices stay for a restart.
func (d *Daemon) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, ls := range d.switches {
		if ls.sw != nil {
			ls.sw.Close()
		}
		if ls.core != nil { // a kernel switch's QEMU sockets
			ls.core.Close()
		}
		delete(d.switches, name)
	}
	d.publish(nil)
}
