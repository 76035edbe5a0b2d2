package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors of the edits; *field.Error reports invalid values.
var (
	ErrNotFound = errors.New("not found")
	ErrInUse    = errors.New("in use")
)

// Switch returns the named switch, or nil.
func (c *Config) Switch(name string) *Switch {
	for i := range c.Switches {
		if c.Switches[i].Name == name {
			return &c.Switches[i]
		}
	}
	return nil
}

// VM returns the named VM, or nil.
func (c *Config) VM(name string) *VM {
	for i := range c.VMs {
		if c.VMs[i].Name == name {
			return &c.VMs[i]
		}
	}
	return nil
}

// Adapter returns the VM's named adapter, or nil.
func (c *Config) Adapter(vm, name string) *Adapter {
	for i := range c.Adapters {
		if a := &c.Adapters[i]; a.VM == vm && a.Name == name {
			return a
		}
	}
	return nil
}

// AdaptersOn returns the IDs of the adapters on a switch.
func (c *Config) AdaptersOn(sw string) []string {
	var ids []string
	for _, a := range c.Adapters {
		if a.Switch == sw {
			ids = append(ids, a.ID())
		}
	}
	return ids
}

// AddSwitch adds a switch; Validate reports a name already taken. A
// switch that names no data path gets auto: the kernel data path where
// the host has it.
func (c *Config) AddSwitch(s Switch) {
	if s.Datapath == "" {
		s.Datapath = Auto
	}
	c.Switches = append(c.Switches, s)
}

// SetSwitch replaces the switch of the same name. One that names no data
// path keeps the one it has ("" is never a new setting: it is what
// switches stored before auto existed have, the core).
func (c *Config) SetSwitch(s Switch) error {
	p := c.Switch(s.Name)
	if p == nil {
		return fmt.Errorf("switch %q: %w", s.Name, ErrNotFound)
	}
	if s.Datapath == "" {
		s.Datapath = p.Datapath
	}
	*p = s
	return nil
}

// RemoveSwitch removes a switch. One that still has adapters is refused
// unless force, which removes its adapters too.
func (c *Config) RemoveSwitch(name string, force bool) error {
	if c.Switch(name) == nil {
		return fmt.Errorf("switch %q: %w", name, ErrNotFound)
	}
	if on := c.AdaptersOn(name); len(on) > 0 {
		if !force {
			return fmt.Errorf("switch %q has adapters %s: %w (remove them first, or force)", name, strings.Join(on, ", "), ErrInUse)
		}
		c.Adapters = deleteFunc(c.Adapters, func(a Adapter) bool { return a.Switch == name })
	}
	c.Switches = deleteFunc(c.Switches, func(s Switch) bool { return s.Name == name })
	return nil
}

// AddVM adds a VM; Validate reports a name already taken.
func (c *Config) AddVM(vm VM) { c.VMs = append(c.VMs, vm) }

// SetVM replaces the VM of the same name.
func (c *Config) SetVM(vm VM) error {
	p := c.VM(vm.Name)
	if p == nil {
		return fmt.Errorf("VM %q: %w", vm.Name, ErrNotFound)
	}
	*p = vm
	return nil
}

// RemoveVM removes a VM; one with adapters is refused unless force, which
// removes them too.
func (c *Config) RemoveVM(name string, force bool) error {
	if c.VM(name) == nil {
		return fmt.Errorf("VM %q: %w", name, ErrNotFound)
	}
	var ids []string
	for _, a := range c.Adapters {
		if a.VM == name {
			ids = append(ids, a.ID())
		}
	}
	if len(ids) > 0 {
		if !force {
			return fmt.Errorf("VM %q has adapters %s: %w (remove them first, or force)", name, strings.Join(ids, ", "), ErrInUse)
		}
		c.Adapters = deleteFunc(c.Adapters, func(a Adapter) bool { return a.VM == name })
	}
	c.VMs = deleteFunc(c.VMs, func(v VM) bool { return v.Name == name })
	return nil
}

// AddAdapter adds an adapter, taking its MAC from the pool when it is
// dynamic. nearlyFull reports a pool at 90 % or more.
func (c *Config) AddAdapter(a Adapter) (added Adapter, nearlyFull bool, err error) {
	if a.DynamicMAC && a.MAC.IsZero() {
		if a.MAC, nearlyFull, err = c.AllocateMAC(); err != nil {
			return a, nearlyFull, err
		}
	}
	c.Adapters = append(c.Adapters, a)
	return a, nearlyFull, nil
}

// SetAdapter replaces the adapter with the same VM and name. A dynamic
// adapter keeps its address unless a new one is given.
func (c *Config) SetAdapter(a Adapter) error {
	p := c.Adapter(a.VM, a.Name)
	if p == nil {
		return fmt.Errorf("adapter %s: %w", a.ID(), ErrNotFound)
	}
	if a.DynamicMAC && a.MAC.IsZero() {
		if p.DynamicMAC {
			a.MAC = p.MAC
		} else {
			m, _, err := c.withoutAdapter(a.VM, a.Name).AllocateMAC()
			if err != nil {
				return err
			}
			a.MAC = m
		}
	}
	*p = a
	return nil
}

func (c *Config) withoutAdapter(vm, name string) *Config {
	cp := *c
	cp.Adapters = deleteFunc(append([]Adapter(nil), c.Adapters...), func(a Adapter) bool { return a.VM == vm && a.Name == name })
	return &cp
}

// RemoveAdapter removes an adapter; its address becomes free.
func (c *Config) RemoveAdapter(vm, name string) error {
	if c.Adapter(vm, name) == nil {
		return fmt.Errorf("adapter %s/%s: %w", vm, name, ErrNotFound)
	}
	c.Adapters = deleteFunc(c.Adapters, func(a Adapter) bool { return a.VM == vm && a.Name == name })
	return nil
}

func deleteFunc[T any](s []T, del func(T) bool) []T {
	out := s[:0]
	for _, v := range s {
		if !del(v) {
			out = append(out, v)
		}
	}
	clear(s[len(out):])
	return out
}

// Changes is what differs between two states, object by object as a
// cluster stores them: the MAC pool, each switch, each VM with its
// adapters. It points into the two states; nothing is copied.
type Changes struct {
	Host     bool           // the MAC pool
	Switches []SwitchChange // sorted by name
	VMs      []VMChange     // sorted by name
}

// SwitchChange is a switch added (Old nil), removed (New nil) or changed.
type SwitchChange struct {
	Name     string
	Old, New *Switch
}

// VMChange is a VM added (Old nil), removed (New nil), or changed itself
// or in its adapters; Adapters are New's, sorted by name.
type VMChange struct {
	Name     string
	Old, New *VM
	Adapters []*Adapter
}

// Compare returns what differs from prev to next.
func Compare(prev, next *Config) Changes {
	ch := Changes{Host: prev.Host != next.Host}
	oldSw := make(map[string]*Switch, len(prev.Switches))
	for i := range prev.Switches {
		oldSw[prev.Switches[i].Name] = &prev.Switches[i]
	}
	for i := range next.Switches {
		s := &next.Switches[i]
		if old := oldSw[s.Name]; !old.Equal(s) {
			ch.Switches = append(ch.Switches, SwitchChange{Name: s.Name, Old: old, New: s})
		}
		delete(oldSw, s.Name)
	}
	for name, old := range oldSw {
		ch.Switches = append(ch.Switches, SwitchChange{Name: name, Old: old})
	}
	oldAds, newAds := adaptersByVM(prev), adaptersByVM(next)
	oldVM := make(map[string]*VM, len(prev.VMs))
	for i := range prev.VMs {
		oldVM[prev.VMs[i].Name] = &prev.VMs[i]
	}
	sameAdapters := func(x, y *Adapter) bool { return x.Equal(y) }
	for i := range next.VMs {
		vm := &next.VMs[i]
		old := oldVM[vm.Name]
		if old == nil || *old != *vm || !slices.EqualFunc(oldAds[vm.Name], newAds[vm.Name], sameAdapters) {
			ch.VMs = append(ch.VMs, VMChange{Name: vm.Name, Old: old, New: vm, Adapters: newAds[vm.Name]})
		}
		delete(oldVM, vm.Name)
	}
	for name, old := range oldVM {
		ch.VMs = append(ch.VMs, VMChange{Name: name, Old: old})
	}
	slices.SortFunc(ch.Switches, func(a, b SwitchChange) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(ch.VMs, func(a, b VMChange) int { return strings.Compare(a.Name, b.Name) })
	return ch
}

// ChangedHosts returns the hosts a change from prev to next is about: those
// of the VMs that changed and of the switches that changed ("*": every
// host, for the pool or a switch spanning all).
func ChangedHosts(prev, next *Config) map[string]bool {
	ch := Compare(prev, next)
	out := map[string]bool{}
	if ch.Host {
		out["*"] = true
	}
	for _, sc := range ch.Switches {
		for _, s := range []*Switch{sc.Old, sc.New} {
			switch {
			case s == nil:
			case !s.Span:
				out[s.Host] = true
			case s.Hosts == "":
				out["*"] = true
			default:
				for _, h := range s.HostList() {
					out[h] = true
				}
			}
		}
	}
	for _, vc := range ch.VMs {
		for _, vm := range []*VM{vc.Old, vc.New} {
			if vm != nil {
				out[vm.Host] = true
			}
		}
	}
	return out
}

// adaptersByVM points at each VM's adapters, sorted by name.
func adaptersByVM(c *Config) map[string][]*Adapter {
	out := map[string][]*Adapter{}
	for i := range c.Adapters {
		a := &c.Adapters[i]
		out[a.VM] = append(out[a.VM], a)
	}
	for _, l := range out {
		slices.SortFunc(l, func(x, y *Adapter) int { return strings.Compare(x.Name, y.Name) })
	}
	return out
}
