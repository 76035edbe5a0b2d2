package l2

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/vlan"
)

// Errors returned by Switch methods.
var (
	ErrNotFound     = errors.New("no such port")
	ErrExists       = errors.New("port name already in use")
	ErrClosed       = errors.New("switch closed")
	ErrTooManyPorts = errors.New("switch has the maximum number of ports")
)

// DefaultMaxFrameSize is the longest frame a switch reads: jumbo frames of
// 9,000 bytes of payload plus headers and a tag.
const DefaultMaxFrameSize = 9216

// Options configure a Switch; zero fields take defaults.
type Options struct {
	Name         string
	DefaultVLAN  frame.VID     // VLAN of untagged ports; 1 if 0
	FDBSize      int           // bound on learned MAC entries; DefaultFDBSize if 0
	Ageing       time.Duration // MAC ageing; DefaultAgeing if 0
	MaxFrameSize int           // longest frame read; DefaultMaxFrameSize if 0
	// Now is the clock (time.Now if nil); tests inject their own.
	Now func() time.Time
	// OnMove is told when a station moves between ports, at most MoveReports
	// times a second (the rest are only counted). It runs on a forwarding
	// goroutine or thread and must not block, nor call the Switch's
	// methods (a configuration change may be waiting for that thread). If
	// nil, moves are logged.
	OnMove      func(Move)
	MoveReports int // reports per second; DefaultMoveReports if 0
	Logger      *slog.Logger
	// Poller, if set, reads the ports that implement PollPort on its
	// forwarding threads; other ports get a goroutine each.
	Poller Poller
}

// DefaultMoveReports is how many station moves a switch reports a second.
const DefaultMoveReports = 10

// Move is a station that was seen on another port than the one it was learned on.
type Move struct {
	Switch   string
	MAC      frame.MAC
	VID      frame.VID
	From, To string
}

// PortConfig is a port's configuration in a switch.
type PortConfig struct {
	// VLAN is the port's 802.1Q model; the zero value means untagged in the
	// switch's default VLAN.
	VLAN vlan.Port
	// MAC is the address assigned to the adapter behind the port, if any.
	// It becomes a static MAC table entry on every VLAN of the port, so that
	// no other port can take it over by sending from it.
	MAC frame.MAC
	// SpoofGuard drops frames whose source address is not MAC.
	SpoofGuard bool
	// MACLimit bounds the learned addresses of this port; 0 means only the
	// switch's bound applies.
	MACLimit int
	// Group, if not 0, is a split-horizon group: a frame from a port never
	// leaves by another port of the same group (as it never leaves by its
	// own). vswitchd puts a switch's network-side ports in one (its uplink
	// and its VXLAN tunnel), so that a physical network and an overlay
	// that both join its hosts make no loop.
	Group uint8
}

// Switch is one isolated Layer-2 domain. Its methods are safe for
// concurrent use. Frames flow between its ports from AddPort until the port
// is removed or the switch is closed.
type Switch struct {
	opts   Options
	fdb    *FDB
	epoch  time.Time
	snap   atomic.Pointer[snapshot]
	moves  MoveLimiter
	manual bool // tests in this package step readers by hand

	mu     sync.Mutex // guards the fields below and serialises configuration changes
	byName map[string]*portEntry
	closed bool
	pools  map[[2]int]*bufPool // by buffer geometry: the sets Poller-driven readers borrow

	stopAger chan struct{}
	agerDone chan struct{}
}

// snapshot is the configuration the data path reads: replaced whole, never changed.
type snapshot struct {
	ports []*portEntry // by PortID; nil for a free ID
	live  []*portEntry // the non-nil ones, for flooding
}

func (s *snapshot) port(id PortID) *portEntry {
	if int(id) < len(s.ports) {
		return s.ports[id]
	}
	return nil
}

// portEntry is one port in one snapshot. A configuration change makes a
// new entry sharing the port, its counters and its reader.
type portEntry struct {
	id   PortID
	name string
	port Port
	feat offload.Features // what the port reads and takes: fixed for its life
	cfg  PortConfig
	ctr  *portCounters
	r    *reader
}

// New returns a switch with no ports.
func New(o Options) (*Switch, error) {
	if o.DefaultVLAN == 0 {
		o.DefaultVLAN = 1
	}
	if !o.DefaultVLAN.IsValid() {
		return nil, field.New("default VLAN", o.DefaultVLAN.String(), "a VLAN ID from 1 to 4094")
	}
	if o.FDBSize < 0 {
		return nil, field.New("MAC table size", fmt.Sprint(o.FDBSize), "a positive number of entries")
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = DefaultMaxFrameSize
	}
	if o.MaxFrameSize < frame.HeaderLen+frame.TagLen || o.MaxFrameSize > 65535 {
		return nil, field.New("maximum frame size", fmt.Sprint(o.MaxFrameSize), "18 to 65535 bytes")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MoveReports <= 0 {
		o.MoveReports = DefaultMoveReports
	}
	s := &Switch{
		opts:     o,
		fdb:      NewFDB(o.FDBSize, o.Ageing),
		epoch:    o.Now(),
		byName:   make(map[string]*portEntry),
		stopAger: make(chan struct{}),
		agerDone: make(chan struct{}),
	}
	s.moves.PerSecond = int64(o.MoveReports)
	s.snap.Store(&snapshot{})
	go s.ager()
	return s, nil
}

// Name returns the switch's name.
func (s *Switch) Name() string { return s.opts.Name }

// now returns the switch clock in nanoseconds since the switch was made.
func (s *Switch) now() int64 { return int64(s.opts.Now().Sub(s.epoch)) }

// ager expires MAC entries in the background so that aged entries free room.
func (s *Switch) ager() {
	defer close(s.agerDone)
	t := time.NewTicker(min(max(s.fdb.Ageing()/10, 100*time.Millisecond), 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stopAger:
			return
		case <-t.C:
			s.fdb.Expire(s.now())
		}
	}
}

func (s *Switch) resolve(cfg PortConfig) (PortConfig, error) {
	if cfg.VLAN.IsZero() {
		v, err := vlan.Untagged(s.opts.DefaultVLAN)
		if err != nil {
			return cfg, err
		}
		cfg.VLAN = v
	}
	var errs []error
	if !cfg.MAC.IsZero() && !cfg.MAC.IsUnicastStation() {
		errs = append(errs, field.New("port MAC", cfg.MAC.String(), "a unicast address (the group bit of the first octet clear)"))
	}
	if cfg.SpoofGuard && cfg.MAC.IsZero() {
		errs = append(errs, field.New("spoofing guard", "on", "only with the port's MAC set"))
	}
	if cfg.MACLimit < 0 {
		errs = append(errs, field.New("port MAC limit", fmt.Sprint(cfg.MACLimit), "0 (no limit of its own) or a positive number"))
	}
	return cfg, errors.Join(errs...)
}

// AddPort attaches p under name and starts forwarding its frames. The switch
// owns p from now on and closes it on RemovePort or Close, even when AddPort
// fails.
func (s *Switch) AddPort(name string, p Port, cfg PortConfig) error {
	cfg, err := s.resolve(cfg)
	if err == nil && name == "" {
		err = field.New("port name", name, "a non-empty name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
	case s.closed:
		err = ErrClosed
	case s.byName[name] != nil:
		err = fmt.Errorf("add port %q: %w", name, ErrExists)
	}
	if err != nil {
		p.Close()
		return err
	}
	old := s.snap.Load()
	id := PortID(slices.Index(old.ports, nil))
	if id < 0 {
		id = PortID(len(old.ports))
	}
	if id >= MaxPorts {
		p.Close()
		return fmt.Errorf("add port %q: %w (%d)", name, ErrTooManyPorts, MaxPorts)
	}
	feat := p.Offloads()
	if feat&offload.Vnet == 0 {
		feat = 0
	}
	pe := &portEntry{id: id, name: name, port: p, feat: feat, cfg: cfg, ctr: new(portCounters)}
	pp, polled := p.(PollPort)
	polled = polled && s.opts.Poller != nil && !s.manual
	pe.r = newReader(s, pe, polled)
	if !cfg.MAC.IsZero() {
		s.fdb.AddStatic(AnyVLAN, cfg.MAC, id)
	}
	s.byName[name] = pe
	s.publish(old, pe)
	switch {
	case s.manual:
	case polled:
		if pe.r.stop, err = s.opts.Poller.Watch(pp.PollFD(), pe.r.readyFn(pp)); err != nil {
			pe.r.stop = func() {} // no reader to wait for
			s.removeLocked(pe)
			return fmt.Errorf("add port %q: %w", name, err)
		}
	default:
		go pe.r.run()
	}
	return nil
}

// publish stores a new snapshot where slot pe.id holds pe (or is freed when
// pe is nil, for id).
func (s *Switch) publish(old *snapshot, pe *portEntry, free ...PortID) {
	next := &snapshot{ports: slices.Clone(old.ports)}
	if pe != nil {
		for int(pe.id) >= len(next.ports) {
			next.ports = append(next.ports, nil)
		}
		next.ports[pe.id] = pe
	}
	for _, id := range free {
		next.ports[id] = nil
	}
	for _, e := range next.ports {
		if e != nil {
			next.live = append(next.live, e)
		}
	}
	s.snap.Store(next)
}

// SetPort changes a port's configuration while traffic flows. The port's
// learned MAC entries are flushed: they may belong to VLANs it has left.
func (s *Switch) SetPort(name string, cfg PortConfig) error {
	cfg, err := s.resolve(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.byName[name]
	if old == nil {
		return fmt.Errorf("set port %q: %w", name, ErrNotFound)
	}
	pe := &portEntry{id: old.id, name: name, port: old.port, feat: old.feat, cfg: cfg, ctr: old.ctr, r: old.r}
	s.byName[name] = pe
	s.publish(s.snap.Load(), pe)
	if old.cfg.MAC != cfg.MAC && !old.cfg.MAC.IsZero() {
		s.fdb.RemoveStatic(AnyVLAN, old.cfg.MAC)
	}
	if !cfg.MAC.IsZero() {
		s.fdb.AddStatic(AnyVLAN, cfg.MAC, pe.id)
	}
	s.fdb.FlushPort(pe.id, false)
	return nil
}

// RemovePort stops forwarding to and from a port, closes it, waits for its
// reader to end and flushes its MAC entries.
func (s *Switch) RemovePort(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pe := s.byName[name]
	if pe == nil {
		return fmt.Errorf("remove port %q: %w", name, ErrNotFound)
	}
	s.removeLocked(pe)
	return nil
}

func (s *Switch) removeLocked(pe *portEntry) {
	delete(s.byName, pe.name)
	s.publish(s.snap.Load(), nil, pe.id)
	if pe.r.stop != nil {
		pe.r.stop() // before Close: the descriptor must not be reused while watched
	}
	pe.port.Close()
	pe.r.wait()
	s.fdb.FlushPort(pe.id, true)
}

// Close removes every port and stops the switch. It is safe to call twice.
func (s *Switch) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, pe := range s.snap.Load().live {
		s.removeLocked(pe)
	}
	close(s.stopAger)
	<-s.agerDone
	return nil
}

// PortInfo describes a port for listings.
type PortInfo struct {
	ID       PortID
	Name     string
	Config   PortConfig
	Counters Counters
	Backend  map[string]uint64 // a CountingPort's own counters; nil for other ports
}

// Ports lists the ports sorted by name, with their backends' counters.
func (s *Switch) Ports() []PortInfo {
	var out []PortInfo
	for _, pe := range s.snap.Load().live {
		pi := PortInfo{ID: pe.id, Name: pe.name, Config: pe.cfg, Counters: pe.ctr.snapshot()}
		if cp, ok := pe.port.(CountingPort); ok {
			pi.Backend = cp.BackendCounters()
		}
		out = append(out, pi)
	}
	slices.SortFunc(out, func(a, b PortInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Counters returns one port's counters.
func (s *Switch) Counters(name string) (Counters, error) {
	s.mu.Lock()
	pe := s.byName[name]
	s.mu.Unlock()
	if pe == nil {
		return Counters{}, fmt.Errorf("counters of %q: %w", name, ErrNotFound)
	}
	return pe.ctr.snapshot(), nil
}

// MoveLimiter lets PerSecond station move reports a second through and
// counts the rest; the kernel data path's reports share it with the core's.
type MoveLimiter struct {
	PerSecond  int64
	mu         sync.Mutex
	second     int64 // current second on the caller's clock
	used       int64
	suppressed atomic.Uint64
}

// Allow reports whether a move seen at now (nanoseconds on any steady
// clock) may be reported, and counts it as suppressed if not.
func (m *MoveLimiter) Allow(now int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sec := now / int64(time.Second); sec != m.second {
		m.second, m.used = sec, 0
	}
	if m.used >= m.PerSecond {
		m.suppressed.Add(1)
		return false
	}
	m.used++
	return true
}

// Suppressed is how many moves Allow held back.
func (m *MoveLimiter) Suppressed() uint64 { return m.suppressed.Load() }

// LogMove logs a station move the way switches report them.
func LogMove(log *slog.Logger, m Move) {
	log.Info("station moved", "switch", m.Switch, "mac", m.MAC, "vlan", m.VID, "from", m.From, "to", m.To)
}

// SuppressedMoves returns how many station moves were not reported because
// of the rate limit.
func (s *Switch) SuppressedMoves() uint64 { return s.moves.Suppressed() }

func (s *Switch) reportMove(m Move, now int64) {
	if !s.moves.Allow(now) {
		return
	}
	if s.opts.OnMove != nil {
		s.opts.OnMove(m)
		return
	}
	LogMove(s.opts.Logger, m)
}
