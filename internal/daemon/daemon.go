// Package daemon is vswitchd's engine: it converges the running switches
// and ports to the desired state (config), declaratively and idempotently.
// The OS side of ports (TAPs, packet sockets, QEMU sockets) sits behind a
// small Backend, so the convergence logic is tested against a fake.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/errtree"
	"github.com/vswitch/vswitch/internal/l2"
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
	// SaveIdentity reads a NIC's identity (addresses, routes, MAC, MTU,
	// IPv6 setting) in a form the daemon keeps in its store before the
	// host adapter of an external switch takes it over.
	SaveIdentity(nic string) ([]byte, error)
	// TakeOver moves the saved identity from the NIC to the host adapter,
	// all or nothing, and says how long the host had no address. Called
	// again after a crash half-way, it finishes the move.
	TakeOver(nic, hostAdapter string, saved []byte) (time.Duration, error)
	// GiveBack moves it from the host adapter back to the NIC, or, if the
	// host adapter is gone, gives the NIC what was saved (nil: nothing
	// saved, only a live move).
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
type Daemon struct {
	mu       sync.Mutex
	backend  Backend
	rec      Records
	recs     map[string][]byte    // the records, as last read or written; nil until the first Apply
	problems map[[2]string]string // {switch, port} → what the last Apply could not do
	log      *slog.Logger
	switches map[string]*liveSwitch
	running  func(vm string) bool // which VMs that vswitchd runs are up; nil: none
	poller   l2.Poller            // the switches' forwarding threads; nil: a goroutine per port
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
	sw       *l2.Switch
	ports    map[string]portPlan
	tookOver string // the NIC whose identity the host adapter holds, if any
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
	return &Daemon{backend: b, rec: rec, log: log, switches: map[string]*liveSwitch{}}
}

// Apply converges to c, which must be valid, and returns what it changed
// (nothing: no change). A port that fails does not stop the others: the
// failures come back joined, and the next Apply tries them again.
func (d *Daemon) Apply(c *config.Config) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	want, err := plan(c, d.running)
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
	// Switches that went away or must be rebuilt with other options.
	rebuilt := map[string]bool{}
	for _, name := range sortedKeys(d.switches) {
		ls := d.switches[name]
		wp, keep := want[name]
		if keep && sameOptions(ls.opts, wp.opts) {
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
			ls.sw.RemovePort(pn)
			if np, ok := wp.portIfAny(pn); !keep || !ok || np.spec != p.spec {
				errs = append(errs, d.remove(p.spec))
			}
		}
		ls.sw.Close()
		delete(d.switches, name)
		if keep {
			rebuilt[name] = true
			note("rebuild switch %s (options changed)", name)
		} else {
			note("remove switch %s", name)
		}
	}
	for _, name := range sortedKeys(want) {
		wp := want[name]
		ls := d.switches[name]
		if ls == nil {
			o := wp.opts
			o.Logger, o.Poller = d.log, d.poller
			sw, err := l2.New(o)
			if err != nil {
				errs = append(errs, &StepError{Switch: name, Step: "create", Err: err})
				continue
			}
			ls = &liveSwitch{opts: wp.opts, sw: sw, ports: map[string]portPlan{}}
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
		errs = append(errs, d.convergePorts(ls, wp, note)...)
		errs = append(errs, d.takeOver(ls, wp, note))
	}
	errs = append(errs, d.sweep(want, note)...)
	err = errors.Join(errs...)
	d.problems = map[[2]string]string{}
	for _, se := range StepErrors(err) {
		d.problems[[2]string{se.Switch, se.Port}] = se.Step + ": " + se.Err.Error()
	}
	return changes, err
}

// problem returns why a port did not come up in the last Apply, or "".
func (d *Daemon) problem(sw, port string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.problems[[2]string{sw, port}]
}

// takeOver moves the host's identity to the host adapter once both the
// uplink and the host port are up.
func (d *Daemon) takeOver(ls *liveSwitch, wp *switchPlan, note func(string, ...any)) error {
	_, up := ls.ports[KindUplink]
	host, hostUp := ls.ports[KindHost]
	if wp.takeOver == "" || ls.tookOver == wp.takeOver || !up || !hostUp {
		return nil
	}
	saved, err := d.saveIdentity(ls.opts.Name, wp.takeOver, host.spec.Device)
	if err != nil {
		return &StepError{Switch: ls.opts.Name, Port: KindHost, Step: "keep the identity of " + wp.takeOver, Err: err}
	}
	gap, err := d.backend.TakeOver(wp.takeOver, host.spec.Device, saved)
	if err != nil {
		return &StepError{Switch: ls.opts.Name, Port: KindHost, Step: "move host identity from " + wp.takeOver, Err: err}
	}
	ls.tookOver = wp.takeOver
	note("moved host identity %s -> %s (no address for %.2f ms)", wp.takeOver, host.spec.Device, float64(gap.Microseconds())/1000)
	return nil
}

// giveBack returns the host's identity to the NIC before the host adapter goes.
func (d *Daemon) giveBack(ls *liveSwitch, note func(string, ...any)) error {
	host, ok := ls.ports[KindHost]
	if ls.tookOver == "" || !ok {
		return nil
	}
	if err := d.giveBackTo(ls.opts.Name, host.spec.Device, ls.tookOver); err != nil {
		return err
	}
	note("moved host identity %s -> %s", host.spec.Device, ls.tookOver)
	ls.tookOver = ""
	return nil
}

func (p *switchPlan) portIfAny(name string) (portPlan, bool) {
	if p == nil {
		return portPlan{}, false
	}
	pp, ok := p.ports[name]
	return pp, ok
}

func sameOptions(a, b l2.Options) bool {
	return a.Name == b.Name && a.DefaultVLAN == b.DefaultVLAN && a.FDBSize == b.FDBSize && a.Ageing == b.Ageing
}

// convergePorts removes, changes and adds the ports of one switch.
func (d *Daemon) convergePorts(ls *liveSwitch, wp *switchPlan, note func(string, ...any)) []error {
	var errs []error
	sw := ls.opts.Name
	for _, pn := range sortedKeys(ls.ports) {
		have := ls.ports[pn]
		want, ok := wp.ports[pn]
		switch {
		case ok && want.spec == have.spec && want.cfg == have.cfg:
		case ok && want.spec == have.spec:
			if err := ls.sw.SetPort(pn, want.cfg); err != nil {
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
			ls.sw.RemovePort(pn)
			delete(ls.ports, pn)
			errs = append(errs, d.remove(have.spec))
			note("remove port %s %s", sw, have.spec.Name)
		}
	}
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
		p, err := d.backend.Open(want.spec)
		if err != nil {
			errs = append(errs, &StepError{Switch: sw, Port: pn, Step: "open " + want.spec.Kind, Err: err})
			continue
		}
		if err := ls.sw.AddPort(pn, p, want.cfg); err != nil { // AddPort closes p on error
			errs = append(errs, &StepError{Switch: sw, Port: pn, Step: "attach", Err: err}, d.remove(want.spec))
			continue
		}
		ls.ports[pn] = want
		note("add port %s %s", sw, want)
	}
	return errs
}

func (d *Daemon) remove(spec PortSpec) error {
	if err := d.backend.Remove(spec); err != nil {
		return &StepError{Switch: spec.Switch, Port: spec.Name, Step: "remove " + spec.Kind, Err: err}
	}
	if err := d.disown(spec.key()); err != nil {
		return &StepError{Switch: spec.Switch, Port: spec.Name, Step: "forget " + spec.Kind, Err: err}
	}
	return nil
}

// Switch returns a running switch, or nil.
func (d *Daemon) Switch(name string) *l2.Switch {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ls := d.switches[name]; ls != nil {
		return ls.sw
	}
	return nil
}

// Describe renders the running switches and ports, one per line, sorted.
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
		ls.sw.Close()
		delete(d.switches, name)
	}
}
