package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/sockfile"
	"github.com/vswitch/vswitch/internal/store"
	"github.com/vswitch/vswitch/internal/vmrun"
)

// Host checks, before a change is applied, what only the host can tell.
type Host interface {
	// CheckNIC reports whether name can be an external switch's uplink.
	CheckNIC(name string) error
	// NICs names the interfaces that can be (CheckNIC), sorted.
	NICs() ([]string, error)
	// MAC returns a link's MAC address where the host side lives.
	MAC(name string) (frame.MAC, error)
}

// Runner runs VMs with QEMU (vmrun.Runner).
type Runner interface {
	Start(vm config.VM, adapters []config.Adapter) (api.VMStatus, error)
	Stop(name string, timeout time.Duration) (api.VMStatus, error)
	Status(name string) api.VMStatus
	Console(name string) string
	// OnExit sets what is called (on another goroutine) when a VM exits.
	OnExit(func(vm string))
	// Adopt finds a VM that an earlier vswitchd started and that still
	// runs, and supervises it from now on; note goes into its status.
	Adopt(name, note string) (api.VMStatus, bool)
	// Leftovers names the VMs an earlier vswitchd started that may still run.
	Leftovers() []string
}

// StateSource is where the desired state lives: the host's store, or the
// cluster's (etcd).
type StateSource interface {
	Load() (*config.Config, uint64, error)
	LoadShared() (*config.Config, uint64, error)
	// Replace stores next as the revision after rev; store.ErrStale if
	// another write came first.
	Replace(next *config.Config, rev uint64) (uint64, error)
}

// Cluster is this host's membership of a cluster (cluster.Cluster): the
// cluster's state and its other hosts.
type Cluster interface {
	StateSource
	Name() string
	VTEPs() map[string]netip.Addr
	Hosts() []api.HostInfo
	// OnChange sets what is called after the state or the hosts changed.
	OnChange(func())
	// Refresh reads the state anew (what follows sees every write made
	// before, through any host); it fails at once while etcd is away.
	Refresh() error
	// Lock takes the cluster's write lock.
	Lock() (unlock func(), err error)
	// Token is the secret hosts' API listeners for each other require.
	Token() string
}

// Deps are what a Controller works with.
type Deps struct {
	// Store is the host's own store: the desired state on a single host,
	// and the records of what the daemon made on the host always.
	Store   *store.Store
	Backend Backend
	Host    Host
	Runner  Runner
	Poller  l2.Poller // forwarding threads; nil: a goroutine per port
	Log     *slog.Logger
	// APISocket is the API's socket: no adapter may use it, and its
	// directory is one where QEMU sockets may be.
	APISocket string
	// SocketDirs are the other directories QEMU sockets may be in
	// (config.SocketDir is always one).
	SocketDirs []string
	// RetryEvery is how often ports that could not come up (a namespace
	// not made yet) are tried again; 2 s if 0.
	RetryEvery time.Duration
	// Kernel is the kernel data path; nil: none here (KernelWhy says why),
	// and a switch that asks for it is refused.
	Kernel    KernelPath
	KernelWhy string
	// HostTimeout bounds each host step (DefaultHostTimeout if 0): a
	// step that takes longer fails, and a write that needed it is refused.
	HostTimeout time.Duration
	// Cluster, if set, holds the desired state instead of Store: this host
	// converges its part of it (config.ForHost), and its spanning switches
	// reach the other hosts from VTEP, their adapters at OverlayMTU.
	Cluster    Cluster
	VTEP       netip.Addr
	OverlayMTU int
}

// Controller is the one owner of convergence: it holds the desired state
// (the store), brings the host to it and keeps it there, and runs VMs.
// Every write goes through Change: the edit is validated, checked against
// the host, applied to the host, and committed only if the host took it,
// so a change the host refuses is never stored. What the daemon makes on
// the host is recorded before it is made (Records), so that after a crash
// at any step Start brings the host back to exactly the stored state.
type Controller struct {
	deps       Deps
	src        StateSource // the cluster's state, or the store
	host       string      // this host's name in the cluster ("": a single host)
	d          *Daemon
	log        *slog.Logger
	socketDirs []string // where QEMU sockets may be

	mu      sync.Mutex      // one write or converge at a time
	up      map[string]bool // VMs started here and not exited, under mu
	pending error           // what the last converge could not do, under mu
	// In a cluster: this host's part and its overlay as last applied
	// (nil: unknown), under mu.
	applied        *config.Config
	appliedOverlay *Overlay

	stop     chan struct{}
	done     chan struct{} // closed when the retry loop ends; nil until Start runs it
	retrying atomic.Bool   // soon's loop runs

	changedMu sync.Mutex    // guards changed
	changed   chan struct{} // closed (and replaced) when the state or the host may have changed
}

// Outcome is what a committed change did.
type Outcome struct {
	Revision uint64
	Changes  []string // what was done on the host
	Warnings []string // ports not up yet, retried
}

// RefusedError is a change the host could not take: nothing was stored
// and the host is as it was.
type RefusedError struct {
	Step string
	Err  error
}

func (e *RefusedError) Error() string { return "could not be changed, nothing was: " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// NewController returns a controller; Start converges and starts retrying.
func NewController(deps Deps) *Controller {
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	if deps.RetryEvery == 0 {
		deps.RetryEvery = 2 * time.Second
	}
	c := &Controller{deps: deps, log: log, up: map[string]bool{}, d: New(deps.Backend, deps.Store, log),
		socketDirs: append([]string{config.SocketDir}, deps.SocketDirs...), stop: make(chan struct{}), changed: make(chan struct{})}
	if deps.APISocket != "" {
		c.socketDirs = append(c.socketDirs, filepath.Dir(deps.APISocket))
	}
	c.src = deps.Store
	if deps.Cluster != nil {
		c.src, c.host = deps.Cluster, deps.Cluster.Name()
	}
	c.d.SetPoller(deps.Poller)
	if deps.Kernel != nil {
		c.d.SetKernelPath(deps.Kernel)
	}
	if deps.HostTimeout != 0 {
		c.d.SetHostTimeout(deps.HostTimeout)
	}
	c.d.SetRunning(func(vm string) bool { return c.up[vm] }) // called by Apply, which c.mu serialises
	deps.Runner.OnExit(func(vm string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.up, vm)
		c.convergeLocked() // the VM's adapters go with it
	})
	return c
}

// Start brings the host to the stored state, removing what earlier runs
// left that the state no longer names, and retries what could not come
// up every RetryEvery until Close. A corrupt store is an error; other
// failures are logged, returned and retried.
func (c *Controller) Start() ([]string, error) {
	c.mu.Lock()
	c.adoptLocked()
	changes, err := c.convergeLocked()
	c.mu.Unlock()
	if c.deps.Cluster != nil {
		c.deps.Cluster.OnChange(func() { // another host's write, or a host came or went
			select {
			case <-c.stop: // closed: nothing is converged any more
				return
			default:
			}
			c.mu.Lock()
			c.clusterChanged()
			pending := c.pending != nil
			c.mu.Unlock()
			if pending {
				c.soon()
			}
		})
	}
	if errors.Is(err, store.ErrCorrupt) {
		return changes, err
	}
	c.done = make(chan struct{})
	go c.retry()
	return changes, err
}

// adoptLocked takes back the VMs that an earlier vswitchd started and that
// still run, so that their adapters come up again and vm ls is true; one
// that the state no longer names is stopped. The caller holds c.mu.
func (c *Controller) adoptLocked() {
	all, _, err := c.src.LoadShared()
	if err != nil {
		return
	}
	cfg := c.local(all)
	for _, name := range c.deps.Runner.Leftovers() {
		vm := cfg.VM(name)
		if vm == nil || !vm.Managed() {
			if _, ok := c.deps.Runner.Adopt(name, "(not in the state: stopped)"); ok {
				c.log.Warn("stopping a VM that an earlier vswitchd started and the state no longer names", "vm", name)
				go c.deps.Runner.Stop(name, 10*time.Second)
			}
			continue
		}
		var lost []string
		for _, a := range cfg.Adapters {
			if a.VM == name && a.Attachment.Kind == config.AttachQEMUStream {
				lost = append(lost, a.Name)
			}
		}
		note := ""
		if len(lost) > 0 {
			note = fmt.Sprintf("; its stream adapters (%s) cannot reconnect (QEMU's stream client never does): restart the VM to reconnect them",
				strings.Join(lost, ", "))
		}
		if st, ok := c.deps.Runner.Adopt(name, note); ok {
			c.up[name] = true
			c.log.Info("adopted a VM that an earlier vswitchd started", "vm", name, "pid", st.PID, "note", st.Note)
		}
	}
}

// soon tries what a change from the cluster could not do again within
// the next two seconds, every 200 ms (a device another host is letting
// go of a VM that moved here is free a moment later), before the retry
// loop's pace takes over.
func (c *Controller) soon() {
	if !c.retrying.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.retrying.Store(false)
		for range 10 {
			select {
			case <-c.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			c.mu.Lock()
			if c.pending != nil {
				c.convergeLocked()
			}
			done := c.pending == nil
			c.mu.Unlock()
			if done {
				return
			}
		}
	}()
}

func (c *Controller) retry() {
	defer close(c.done)
	t := time.NewTicker(c.deps.RetryEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if c.pending != nil {
			c.convergeLocked()
		}
		c.mu.Unlock()
	}
}

// Close stops retrying and closes the switches; devices stay for the next start.
func (c *Controller) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	if c.done != nil {
		<-c.done
	}
	c.d.Close()
}

// convergeLocked applies the stored state; the caller holds c.mu.
func (c *Controller) convergeLocked() ([]string, error) {
	cfg, _, err := c.src.LoadShared()
	if err != nil {
		c.log.Error("reading the stored state", "err", err)
		return nil, err
	}
	local := c.local(cfg)
	c.prepare(cfg)
	changes, err := c.d.Apply(local)
	c.pending = err
	if err != nil {
		c.log.Warn("converging", "err", err)
	}
	c.remember(local, cfg)
	c.notify()
	return changes, err
}

// Changed returns a channel that is closed at the next converge or write:
// the state, the ports' states or the VMs may then be different. Watchers
// (the API's event stream) read what they show anew and ask again.
func (c *Controller) Changed() <-chan struct{} {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	return c.changed
}

func (c *Controller) notify() {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	close(c.changed)
	c.changed = make(chan struct{})
}

// clusterChanged converges after another host's write or a host that came
// or went, unless this host's part and its tunnels' peers are as they were
// when last applied and nothing waits for a retry: most writes in a
// cluster are about other hosts.
func (c *Controller) clusterChanged() {
	defer c.notify() // another host's write, or a host came or went: watchers look again
	all, _, err := c.src.LoadShared()
	if err == nil && c.pending == nil && c.applied != nil && c.local(all).Equal(c.applied) && c.overlay(all).equal(c.appliedOverlay) {
		return
	}
	c.convergeLocked()
}

// remember notes what was applied (local, with all's overlay), for clusterChanged.
func (c *Controller) remember(local, all *config.Config) {
	if c.deps.Cluster == nil {
		return
	}
	c.applied, c.appliedOverlay = local, c.overlay(all)
}

// State returns the stored state and its revision.
func (c *Controller) State() (*config.Config, uint64, error) { return c.src.Load() }

// StateShared is State without the copy, for readers that only look (the
// topology a live view is pushed after every change): the caller must
// not change it.
func (c *Controller) StateShared() (*config.Config, uint64, error) { return c.src.LoadShared() }

// PeerToken is the token other hosts of the cluster present ("": none,
// a single host: the peer listener refuses everything).
func (c *Controller) PeerToken() string {
	if c.deps.Cluster == nil {
		return ""
	}
	return c.deps.Cluster.Token()
}

// ErrHostDown: a read asked of another host that is down.
var ErrHostDown = errors.New("the host is down")

// Peer returns where another host of the cluster serves reads, and the
// token it requires.
func (c *Controller) Peer(host string) (addr, token string, err error) {
	if c.deps.Cluster == nil {
		return "", "", field.New("host", host, "nothing: this host is not in a cluster (vswitchd --etcd)")
	}
	for _, h := range c.deps.Cluster.Hosts() {
		if h.Name != host {
			continue
		}
		if !h.Up {
			return "", "", fmt.Errorf("host %s: %w (last seen %s)", host, ErrHostDown, h.LastSeen)
		}
		return h.API, c.deps.Cluster.Token(), nil
	}
	return "", "", fmt.Errorf("host %q: %w (vswitchctl host ls)", host, config.ErrNotFound)
}

// NICs names this host's interfaces that could be an external switch's
// uplink (Host.NICs).
func (c *Controller) NICs() ([]string, error) { return c.deps.Host.NICs() }

// OverlayMTU is the MTU adapters of spanning switches get on this host.
func (c *Controller) OverlayMTU() int { return c.deps.OverlayMTU }

// HostName is this host's name in its cluster ("" on a single host).
func (c *Controller) HostName() string { return c.host }

// Hosts lists the cluster's hosts (on a single host, none).
func (c *Controller) Hosts() []api.HostInfo {
	if c.deps.Cluster == nil {
		return nil
	}
	return c.deps.Cluster.Hosts()
}

// KernelPath reports whether this host has the kernel data path.
func (c *Controller) KernelPath() bool { return c.deps.Kernel != nil }

// KernelHosts says, for this host and every registered one, whether it has
// the kernel data path (where its auto switches run).
func (c *Controller) KernelHosts() map[string]bool {
	out := map[string]bool{c.host: c.KernelPath()}
	for _, h := range c.Hosts() {
		if h.Name != c.host {
			out[h.Name] = h.KernelPath
		}
	}
	return out
}

// Datapaths returns the data path each switch of this host runs on here
// (an auto switch's resolved).
func (c *Controller) Datapaths(all *config.Config) map[string]string {
	out := map[string]string{}
	for i := range all.Switches {
		if sw := &all.Switches[i]; sw.On(c.host) {
			out[sw.Name] = string(sw.RunsOn(c.KernelPath()))
		}
	}
	return out
}

// local is the part of a state this host converges: all of it on a single host.
func (c *Controller) local(cfg *config.Config) *config.Config {
	if c.deps.Cluster == nil {
		return cfg
	}
	return cfg.ForHost(c.host)
}

// prepare gives the daemon what the next Apply of all's local part needs
// from the rest of the cluster: the spanning switches' peers, and the
// devices other hosts now have.
func (c *Controller) prepare(all *config.Config) {
	if c.deps.Cluster == nil {
		return
	}
	c.d.SetOverlay(c.overlay(all))
	c.d.SetHandover(HandoverKeys(all, c.host, c.KernelHosts()))
}

// overlay is what this host's spanning switches need: for each, the
// tunnel endpoints of the other hosts it is on.
func (c *Controller) overlay(cfg *config.Config) *Overlay {
	if c.deps.Cluster == nil {
		return nil
	}
	vteps := c.deps.Cluster.VTEPs()
	o := &Overlay{Local: c.deps.VTEP, MTU: c.deps.OverlayMTU, Peers: map[string][]netip.Addr{}}
	for i := range cfg.Switches {
		sw := &cfg.Switches[i]
		if !sw.Span || !sw.On(c.host) {
			continue
		}
		peers := []netip.Addr{}
		for h, a := range vteps {
			if h != c.host && a != c.deps.VTEP && sw.On(h) && !slices.Contains(peers, a) {
				peers = append(peers, a)
			}
		}
		for _, a := range sw.Remotes() { // plain VXLAN hosts outside the cluster
			if a != c.deps.VTEP && !slices.Contains(peers, a) {
				peers = append(peers, a)
			}
		}
		slices.SortFunc(peers, netip.Addr.Compare)
		o.Peers[sw.Name] = peers
	}
	return o
}

// KernelMove reports a station move the kernel data path saw (its
// OnMove), as the core reports its own.
func (c *Controller) KernelMove(m kdp.Move) { c.d.KernelMove(m) }

// Switch returns a running switch as reads see it (either data path), or nil.
func (c *Controller) Switch(name string) LiveSwitch { return c.d.Switch(name) }

// CoreSwitch returns a running switch of the userspace core, or nil.
func (c *Controller) CoreSwitch(name string) *l2.Switch { return c.d.CoreSwitch(name) }

// PortStates says, for every port the state names (uplinks, host
// adapters, adapters), whether it is up on the host and if not, why. It
// does not wait for a write in progress.
func (c *Controller) PortStates(cfg *config.Config) []api.PortState {
	cfg = c.local(cfg)
	var out []api.PortState
	add := func(sw, port, vm string) {
		ps := api.PortState{Switch: sw, Port: port, State: api.PortUp}
		up, problem := c.d.PortState(sw, port)
		switch {
		case problem != nil && errors.Is(problem, ErrNotYet):
			ps.State, ps.Reason = api.PortWaiting, problem.Error()
		case problem != nil:
			ps.State, ps.Reason = api.PortFailed, problem.Error()
		case up:
		case vm != "":
			ps.State, ps.Reason = api.PortDown, "VM "+vm+" is not running"
		default:
			ps.State = api.PortDown
		}
		out = append(out, ps)
	}
	for _, sw := range cfg.Switches {
		if sw.Type == config.External {
			add(sw.Name, KindUplink, "")
		}
		if sw.ManagementOS() {
			add(sw.Name, KindHost, "")
		}
	}
	for _, a := range cfg.Adapters {
		vm := ""
		if v := cfg.VM(a.VM); v != nil && v.Managed() {
			vm = v.Name
		}
		add(a.Switch, a.ID(), vm)
	}
	return out
}

// Change runs one write: edit a copy of the state, validate it, check it
// against the host, apply it, and store it if the host took it. If a
// switch or adapter that the edit added, changed or removed could not be
// set up or torn down, the host goes back to the stored state and the
// answer is a *RefusedError; an adapter waiting for its namespace is
// stored with a warning and retried.
func (c *Controller) Change(edit func(*config.Config) error) (Outcome, error) {
	// In a cluster a write is first tried on its own: read, edit, apply
	// this host's part, compare-and-swap. If another host wrote first, it
	// queues for the cluster's write lock (an etcd mutex, taken before the
	// host's own lock so that the host converges other hosts' writes while
	// its writer waits) and is made again on the newer state, until it is
	// stored: a host that keeps losing the race still gets its turn.
	// A write that makes many adapters (a batch: devices made on this host
	// before the transaction, seconds of work) takes the lock first: losing
	// the race would make it all again.
	start := time.Now()
	out, retry, err := c.attempt(edit, false)
	if !retry {
		c.log.Debug("write", "took", time.Since(start), "attempts", 1, "err", err)
		return out, err
	}
	unlock, err := c.deps.Cluster.Lock()
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	locked := time.Now()
	for n := 2; ; n++ {
		out, retry, err := c.attempt(edit, true)
		if !retry || n == maxAttempts {
			c.log.Debug("write", "took", time.Since(start), "waited for the cluster's lock", locked.Sub(start), "attempts", n, "err", err)
			return out, err
		}
	}
}

// attempt makes one try of a write under the host's lock; retry says that
// another host's write came first, or (without the cluster's lock) that
// the write is one to make under it (a cluster only).
func (c *Controller) attempt(edit func(*config.Config) error, locked bool) (Outcome, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.notify()
	if c.deps.Cluster != nil {
		if err := c.deps.Cluster.Refresh(); err != nil {
			return Outcome{}, false, err // etcd unreachable: nothing can be stored
		}
	}
	return c.changeOnce(edit, locked || c.deps.Cluster == nil)
}

// lockFirst is how many adapters a cluster write may add before it is
// made under the cluster's lock from the start.
const lockFirst = 8

// MinOverlayMTU is the least MTU a spanning switch's adapters may get
// (IPv6's minimum).
const MinOverlayMTU = 1280

// maxAttempts bounds how often a cluster write is made again after
// another host's write came first.
const maxAttempts = 100

func (c *Controller) changeOnce(edit func(*config.Config) error, locked bool) (_ Outcome, retry bool, _ error) {
	all, rev, err := c.src.LoadShared() // read-only: the edit is made on a clone
	if err != nil {
		return Outcome{}, false, err
	}
	nextAll := all.Clone()
	if err := edit(nextAll); err != nil {
		return Outcome{}, false, err
	}
	if err := nextAll.Validate(); err != nil {
		return Outcome{}, false, err
	}
	prev, next := c.local(all), c.local(nextAll)
	if err := c.checkCluster(all, nextAll); err != nil {
		return Outcome{}, false, err
	}
	if err := c.checkHost(prev, next); err != nil {
		return Outcome{}, false, err
	}
	if all.Equal(nextAll) {
		return Outcome{Revision: rev, Changes: []string{}}, false, nil
	}
	if !locked && len(nextAll.Adapters)-len(all.Adapters) >= lockFirst {
		return Outcome{}, true, nil // nothing applied yet: made again under the cluster's lock
	}
	changes, aerr := []string{}, c.pending
	if !prev.Equal(next) {
		c.prepare(nextAll)
		changes, aerr = c.d.Apply(next)
		if refused := refusal(prev, next, aerr); refused != nil {
			c.prepare(all)
			_, err := c.d.Apply(prev)
			if err != nil {
				c.log.Warn("undoing a refused change", "err", err)
			}
			c.pending = err // what the undo left (a step still running late) is retried
			c.remember(prev, all)
			return Outcome{}, false, refused
		}
	}
	rev, err = c.src.Replace(nextAll, rev) // validated above; on a single host c.mu keeps rev current
	if err != nil {
		c.applied = nil // converged to something not stored: the next change from the cluster converges
		if errors.Is(err, store.ErrStale) && c.deps.Cluster != nil {
			return Outcome{}, true, err
		}
		c.convergeLocked() // back to what is stored
		return Outcome{}, false, err
	}
	c.remember(next, nextAll)
	c.pending = aerr
	out := Outcome{Revision: rev, Changes: append([]string{}, changes...)}
	if c.deps.Cluster != nil {
		touched := config.ChangedHosts(all, nextAll)
		for _, h := range c.deps.Cluster.Hosts() {
			if h.Name != c.host && (touched[h.Name] || touched["*"]) {
				out.Changes = append(out.Changes, fmt.Sprintf("stored for host %s, which brings it about", h.Name))
			}
		}
	}
	for vm := range c.up {
		if v := next.VM(vm); v == nil || !v.Managed() { // removed (moved, or no longer run by vswitchd): stopped
			out.Changes = append(out.Changes, "stop VM "+vm+" (no longer in the state)")
			go c.deps.Runner.Stop(vm, 10*time.Second)
		}
	}
	for _, se := range StepErrors(aerr) {
		out.Warnings = append(out.Warnings, fmt.Sprintf("not up yet (retried every %v): %v", c.deps.RetryEvery, se))
	}
	for _, sw := range next.Switches {
		old := prev.Switch(sw.Name)
		if sw.Span && (old == nil || !old.Span) {
			out.Warnings = append(out.Warnings, fmt.Sprintf("switch %s spans hosts over VXLAN (VNI %d): its adapters and host adapters get MTU %d here "+
				"(the underlay's less VXLAN's overhead); frames between hosts are not encrypted: the underlay is trusted", sw.Name, sw.VNI, c.deps.OverlayMTU))
		}
		kernel := c.deps.Kernel != nil
		if old != nil && old.OnKernel(kernel) != sw.OnKernel(kernel) && len(next.AdaptersOn(sw.Name)) > 0 {
			out.Warnings = append(out.Warnings, fmt.Sprintf("switch %s moved to the %s data path: its namespace adapters' "+
				"interfaces and its host adapter were made anew (a veth on the kernel path, a TAP on the core): set their addresses again; "+
				"TAPs that QEMU opens are kept", sw.Name, sw.RunsOn(kernel)))
		}
		if sw.Datapath == config.Auto && !kernel && sw.On(c.host) && (old == nil || old.Datapath != config.Auto) {
			out.Warnings = append(out.Warnings, fmt.Sprintf("switch %s runs on the userspace core here: the kernel data path is not available (%s)",
				sw.Name, cmp.Or(c.deps.KernelWhy, "not loaded")))
		}
		if sw.Type == config.External && !sw.ManagementOS() &&
			(old == nil || old.Type != config.External || old.ManagementOS() || old.Uplink != sw.Uplink) {
			out.Warnings = append(out.Warnings, fmt.Sprintf("switch %s does not allow the management OS: %s is the switch's alone, "+
				"its addresses and routes are taken off it and the host has no network path through it "+
				"(they are kept and given back when the switch goes or allows the management OS)", sw.Name, sw.Uplink))
		}
	}
	return out, false, nil
}

// checkCluster refuses what needs a cluster on a single host (a switch
// that spans, a host named on an object) and, in a cluster, a spanning
// switch on a host that is not registered.
func (c *Controller) checkCluster(prev, next *config.Config) error {
	var l field.List
	if c.deps.Cluster == nil {
		for _, sw := range next.Switches {
			if sw.Span {
				l.Add(fmt.Sprintf("switches[%s].span", sw.Name), "true", "false: a switch spans hosts only in a cluster (vswitchd --etcd)")
			}
			if sw.Host != "" {
				l.Add(fmt.Sprintf("switches[%s].host", sw.Name), sw.Host, "empty: this host is not in a cluster (vswitchd --etcd)")
			}
		}
		for _, vm := range next.VMs {
			if vm.Host != "" {
				l.Add(fmt.Sprintf("vms[%s].host", vm.Name), vm.Host, "empty: this host is not in a cluster (vswitchd --etcd)")
			}
		}
		return l.Err()
	}
	for _, sw := range next.Switches {
		if old := prev.Switch(sw.Name); sw.Span && sw.On(c.host) && (old == nil || !old.Span) && c.deps.OverlayMTU < MinOverlayMTU {
			l.Add(fmt.Sprintf("switches[%s].span", sw.Name), "true", fmt.Sprintf("false on this host: its underlay leaves adapters an MTU of %d "+
				"after VXLAN's overhead, less than %d (raise the MTU of the VTEP's interface)", c.deps.OverlayMTU, MinOverlayMTU))
		}
	}
	known := c.deps.Cluster.VTEPs()
	hostOK := func(p, h string, old bool) {
		if _, ok := known[h]; !ok && !old {
			names := slices.Sorted(maps.Keys(known))
			l.Add(p, h, "the name of a host of the cluster ("+strings.Join(names, ", ")+")")
		}
	}
	for _, sw := range next.Switches {
		old := prev.Switch(sw.Name)
		if !sw.Span {
			hostOK(fmt.Sprintf("switches[%s].host", sw.Name), sw.Host, old != nil && old.Host == sw.Host)
			continue
		}
		for _, h := range sw.HostList() {
			hostOK(fmt.Sprintf("switches[%s].hosts", sw.Name), h, old != nil && old.Hosts == sw.Hosts)
		}
	}
	for _, vm := range next.VMs {
		old := prev.VM(vm.Name)
		hostOK(fmt.Sprintf("vms[%s].host", vm.Name), vm.Host, old != nil && old.Host == vm.Host)
	}
	return l.Err()
}

// refusal returns the first failure of something the change touched that
// is not merely waiting (ErrNotYet), or nil.
func refusal(prev, next *config.Config, aerr error) error {
	for _, se := range StepErrors(aerr) {
		if errors.Is(se, ErrNotYet) {
			continue
		}
		before, after := prev.Switch(se.Switch), next.Switch(se.Switch)
		// Equal when in neither state: something an earlier run left,
		// which the sweep keeps trying to remove, is not this change's.
		touched := !before.Equal(after)
		if vm, name, ok := strings.Cut(se.Port, "/"); ok {
			touched = touched || !prev.Adapter(vm, name).Equal(next.Adapter(vm, name))
		}
		if touched {
			return &RefusedError{Step: se.Step, Err: se}
		}
	}
	return nil
}

// checkHost verifies, before anything is applied, what only the host can
// tell: uplinks that can be bound, namespaces that are namespaces (or not
// made yet), socket paths that are free and allowed, and MAC addresses no
// host adapter or NIC has.
func (c *Controller) checkHost(prev, next *config.Config) error {
	var l field.List
	for _, sw := range next.Switches {
		if sw.Datapath == config.Kernel && c.deps.Kernel == nil {
			l.Add(fmt.Sprintf("switches[%s].datapath", sw.Name), string(sw.Datapath),
				"userspace: the kernel data path is not available here ("+cmp.Or(c.deps.KernelWhy, "not loaded")+")")
		}
		if sw.Type != config.External {
			continue
		}
		if old := prev.Switch(sw.Name); old != nil && old.Type == config.External && old.Uplink == sw.Uplink {
			continue
		}
		if err := c.deps.Host.CheckNIC(sw.Uplink); err != nil {
			l.Add(fmt.Sprintf("switches[%s].uplink", sw.Name), sw.Uplink, "an existing network interface of the host, not the loopback or one of vswitch's own ("+err.Error()+")")
		}
	}
	before := make(map[string]*config.Adapter, len(prev.Adapters))
	for i := range prev.Adapters {
		before[prev.Adapters[i].ID()] = &prev.Adapters[i]
	}
	for i := range next.Adapters {
		a := &next.Adapters[i]
		if a.Equal(before[a.ID()]) {
			continue
		}
		p := fmt.Sprintf("adapters[%s].attachment", a.ID())
		switch a.Attachment.Kind {
		case config.AttachNetns:
			if err := nsrun.Check(nsrun.Path(a.Attachment.Namespace)); errors.Is(err, nsrun.ErrNotNamespace) {
				l.Add(p+".namespace", a.Attachment.Namespace, "a network namespace (a name under /run/netns, a PID or a namespace file), or one not made yet")
			}
		case config.AttachQEMUStream, config.AttachQEMUDgram:
			c.checkSocket(&l, p+".socket", a.SocketPath())
		}
	}
	c.checkMACs(&l, prev, next)
	return l.Err()
}

// checkSocket: a QEMU socket must be in an allowed directory, not the
// API's, and not a file that exists unless it is the daemon's own or a
// stale socket.
func (c *Controller) checkSocket(l *field.List, path, sock string) {
	in := false
	for _, d := range c.socketDirs {
		in = in || filepath.Dir(filepath.Clean(sock)) == filepath.Clean(d)
	}
	switch {
	case c.deps.APISocket != "" && filepath.Clean(sock) == filepath.Clean(c.deps.APISocket):
		l.Add(path, sock, "a path other than the API's own socket")
	case !in:
		l.Add(path, sock, "a path in "+strings.Join(c.socketDirs, " or ")+" (vswitchd --socket-dir allows others)")
	case c.d.owns(socketKey(sock)):
	default:
		fi, err := os.Lstat(sock)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSocket == 0:
			l.Add(path, sock, "a path where no file exists (this is not a socket)")
		case sockfile.Live(sock):
			l.Add(path, sock, "a path no running process serves (this socket is in use)")
		}
	}
}

// checkMACs refuses an adapter MAC that a host adapter or uplink NIC has,
// when either side is new or changed.
func (c *Controller) checkMACs(l *field.List, prev, next *config.Config) {
	type holder struct{ name, sw string }
	host := map[frame.MAC]holder{}
	for _, sw := range next.Switches {
		link, what := sw.Name, "the host adapter of switch "+sw.Name
		if sw.Type == config.External {
			link, what = sw.Uplink, "NIC "+sw.Uplink+" (uplink of switch "+sw.Name+")"
		} else if !sw.ManagementOS() {
			continue
		}
		if m, err := c.deps.Host.MAC(link); err == nil && !m.IsZero() {
			host[m] = holder{what, sw.Name}
		}
	}
	for i := range next.Adapters {
		a := &next.Adapters[i]
		h, ok := host[a.MAC]
		if !ok {
			continue
		}
		old := prev.Adapter(a.VM, a.Name)
		if old == nil || old.MAC != a.MAC || !prev.Switch(h.sw).Equal(next.Switch(h.sw)) {
			l.Add(fmt.Sprintf("adapters[%s].mac", a.ID()), a.MAC.String(), "an address no host adapter or NIC has ("+h.name+" has it)")
		}
	}
}

// StartVM runs a VM with QEMU. Its adapters come up first, so that
// vswitchd listens on their sockets before QEMU connects.
func (c *Controller) StartVM(name string) (api.VMStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all, _, err := c.src.Load()
	if err != nil {
		return api.VMStatus{}, err
	}
	cfg := c.local(all)
	vm := cfg.VM(name)
	if vm == nil {
		if v := all.VM(name); v != nil {
			return api.VMStatus{}, fmt.Errorf("VM %q lives on host %s: start it there (vswitchctl on that host's socket)", name, v.Host)
		}
		return api.VMStatus{}, fmt.Errorf("VM %q: %w", name, config.ErrNotFound)
	}
	var ads []config.Adapter
	for _, a := range cfg.Adapters {
		if a.VM == vm.Name {
			ads = append(ads, a)
		}
	}
	if _, err := vmrun.Args(*vm, ads, "tcg"); err != nil {
		return api.VMStatus{}, err // say what is missing before anything comes up
	}
	wasUp := c.up[vm.Name]
	c.up[vm.Name] = true
	c.convergeLocked()
	st, err := c.deps.Runner.Start(*vm, ads)
	if err != nil {
		if !wasUp {
			delete(c.up, vm.Name)
			c.convergeLocked()
		}
		return api.VMStatus{}, err
	}
	return st, nil
}

// StopVM stops QEMU; the exit takes the VM's adapters down (OnExit).
func (c *Controller) StopVM(name string, timeout time.Duration) (api.VMStatus, error) {
	return c.deps.Runner.Stop(name, timeout)
}

// VMStatus says whether a VM runs.
func (c *Controller) VMStatus(name string) api.VMStatus { return c.deps.Runner.Status(name) }

// VMConsole returns the tail of a VM's console.
func (c *Controller) VMConsole(name string) string { return c.deps.Runner.Console(name) }
