package daemon

import (
	"errors"
	"fmt"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/field"
)

// ErrBlocked: a VM cannot move to the host asked; the error lists why.
var ErrBlocked = errors.New("the move is blocked")

// MoveVM moves a VM, with its adapters' MACs, VLAN settings and switches,
// to another host of the cluster: that host brings the adapters up and
// announces their MACs, this one (or the VM's old host) lets them go (a
// namespace's TAP is handed over, not deleted). With check it changes
// nothing and says what would block the move.
func (c *Controller) MoveVM(name, to string, check bool) (api.MoveResult, error) {
	if c.deps.Cluster == nil {
		return api.MoveResult{}, field.New("to", to, "nothing: this host is not in a cluster (vswitchd --etcd), a VM has nowhere to move")
	}
	if err := c.deps.Cluster.Refresh(); err != nil && !check {
		return api.MoveResult{}, err
	}
	all, _, err := c.src.LoadShared()
	if err != nil {
		return api.MoveResult{}, err
	}
	vm := all.VM(name)
	if vm == nil {
		return api.MoveResult{}, fmt.Errorf("VM %q: %w", name, config.ErrNotFound)
	}
	res := api.MoveResult{VM: name, From: vm.Host, To: to, Blockers: c.moveBlockers(all, vm, to)}
	if check {
		return res, nil
	}
	if len(res.Blockers) > 0 {
		return res, fmt.Errorf("%w: VM %s cannot move from %s to %s: %v", ErrBlocked, name, vm.Host, to, res.Blockers)
	}
	out, err := c.Change(func(cfg *config.Config) error {
		v := cfg.VM(name)
		if v == nil {
			return fmt.Errorf("VM %q: %w", name, config.ErrNotFound)
		}
		v.Host = to
		return nil
	})
	if err != nil {
		return res, err
	}
	res.Moved = true
	res.Result = &api.Result{Revision: out.Revision, Changes: out.Changes, Warnings: out.Warnings}
	if len(res.Result.Changes) == 0 {
		res.Result.Changes = []string{fmt.Sprintf("VM %s is on host %s: that host brings its adapters up and announces their MACs", name, to)}
	}
	return res, nil
}

// moveBlockers says what keeps vm from moving to host to.
func (c *Controller) moveBlockers(all *config.Config, vm *config.VM, to string) []string {
	var out []string
	hosts := map[string]api.HostInfo{}
	for _, h := range c.deps.Cluster.Hosts() {
		hosts[h.Name] = h
	}
	target, known := hosts[to]
	switch {
	case vm.Host == to:
		out = append(out, "VM "+vm.Name+" is on host "+to+" already")
	case !known:
		out = append(out, "host "+to+" is not a host of the cluster (vswitchctl host ls)")
	case !target.Up:
		out = append(out, "host "+to+" is down (its lease expired at "+target.LastSeen+")")
	}
	c.mu.Lock()
	running := c.up[vm.Name]
	c.mu.Unlock()
	if vm.Managed() && vm.Host != c.host {
		out = append(out, "VM "+vm.Name+" is one vswitchd runs with QEMU: ask its host "+vm.Host+" to move it (only it knows whether it runs)")
	}
	if running {
		out = append(out, "VM "+vm.Name+" runs under vswitchd here: stop it first (QEMU's own migration moves a running guest; vswitch moves its network)")
	}
	source := hosts[vm.Host]
	for i := range all.Adapters {
		a := &all.Adapters[i]
		if a.VM != vm.Name {
			continue
		}
		sw := all.Switch(a.Switch)
		if sw != nil && !sw.On(to) {
			out = append(out, fmt.Sprintf("adapter %s: switch %s is not on host %s (it is %s)", a.ID(), sw.Name, to, sw.Where()))
			continue
		}
		if sw != nil && sw.Span && known && source.MTU != 0 && target.MTU != source.MTU {
			out = append(out, fmt.Sprintf("adapter %s: spanning switch %s gives adapters MTU %d on %s but %d on %s", a.ID(), sw.Name, source.MTU, vm.Host, target.MTU, to))
		}
	}
	if known && len(out) == 0 {
		moved := all.Clone()
		moved.VM(vm.Name).Host = to
		for _, fe := range field.All(moved.Validate()) { // a name its devices would take on the target, and the like
			out = append(out, fe.Error())
		}
	}
	return out
}
