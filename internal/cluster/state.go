package cluster

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/store"
)

// The desired state is kept as one etcd key per object, so that a write
// sends (and every host's watch decodes) only what it changed, whatever
// the size of the state:
//
//	state/rev            written by every write: its mod revision is the state's revision
//	state/host           the MAC pool (config.Host)
//	state/switch/NAME    a switch
//	state/vm/NAME        a VM and its adapters (they move with it)
//
// A write is one transaction: If(ModRevision(state/rev) == the revision
// read) Then(put what changed, delete what went, put state/rev).
const (
	keyStatePrefix = "state/"
	keyRev         = "state/rev"
	keyHostDoc     = "state/host"
	keySwitch      = "state/switch/"
	keyVM          = "state/vm/"
)

// vmDoc is a VM's key: the VM and its adapters.
type vmDoc struct {
	VM       config.VM        `json:"vm"`
	Adapters []config.Adapter `json:"adapters,omitempty"`
}

func (d *vmDoc) equal(e *vmDoc) bool {
	return d.VM == e.VM && slices.EqualFunc(d.Adapters, e.Adapters, func(a, b config.Adapter) bool { return a.Equal(&b) })
}

// objects is the state as etcd holds it, decoded, key by key.
type objects struct {
	host     config.Host
	switches map[string]config.Switch
	vms      map[string]vmDoc
}

func newObjects() *objects {
	return &objects{switches: map[string]config.Switch{}, vms: map[string]vmDoc{}}
}

// split turns a state into its objects.
func split(c *config.Config) *objects {
	o := newObjects()
	o.host = c.Host
	for _, s := range c.Switches {
		o.switches[s.Name] = s
	}
	for _, vm := range c.VMs {
		o.vms[vm.Name] = vmDoc{VM: vm}
	}
	for _, a := range c.Adapters {
		d := o.vms[a.VM]
		d.Adapters = append(d.Adapters, a)
		o.vms[a.VM] = d
	}
	for name, d := range o.vms {
		if !slices.IsSortedFunc(d.Adapters, byName) {
			slices.SortFunc(d.Adapters, byName)
			o.vms[name] = d
		}
	}
	return o
}

func byName(a, b config.Adapter) int { return cmp.Compare(a.Name, b.Name) }

// config assembles the state, sorted: switches and VMs by name, adapters
// by VM and name (a VM doc's adapters are kept sorted). It shares only
// the values behind pointer fields with the objects, which never change
// them (a key's new value replaces a document whole).
func (o *objects) config() *config.Config {
	n := 0
	for _, d := range o.vms {
		n += len(d.Adapters)
	}
	c := &config.Config{Host: o.host, Switches: make([]config.Switch, 0, len(o.switches)),
		VMs: make([]config.VM, 0, len(o.vms)), Adapters: make([]config.Adapter, 0, n)}
	for _, name := range slices.Sorted(maps.Keys(o.switches)) {
		c.Switches = append(c.Switches, o.switches[name])
	}
	for _, name := range slices.Sorted(maps.Keys(o.vms)) {
		d := o.vms[name]
		c.VMs = append(c.VMs, d.VM)
		c.Adapters = append(c.Adapters, d.Adapters...)
	}
	return c
}

// sortState sorts c in place as config() assembles a state: switches and
// VMs by name, adapters by VM and name (a write's additions come last: the
// sort has little to move).
func sortState(c *config.Config) {
	slices.SortStableFunc(c.Switches, func(a, b config.Switch) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortStableFunc(c.VMs, func(a, b config.VM) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortStableFunc(c.Adapters, func(a, b config.Adapter) int { return cmp.Or(cmp.Compare(a.VM, b.VM), cmp.Compare(a.Name, b.Name)) })
}

// normalise returns c as config() would assemble it.
func normalise(c *config.Config) *config.Config { return split(c).config() }

// apply puts one key's value (nil: deleted) into the objects.
func (o *objects) apply(key string, value []byte) error {
	switch {
	case key == keyHostDoc && value != nil:
		return json.Unmarshal(value, &o.host)
	case strings.HasPrefix(key, keySwitch):
		name := strings.TrimPrefix(key, keySwitch)
		if value == nil {
			delete(o.switches, name)
			return nil
		}
		var s config.Switch
		if err := json.Unmarshal(value, &s); err != nil {
			return err
		}
		o.switches[name] = s
	case strings.HasPrefix(key, keyVM):
		name := strings.TrimPrefix(key, keyVM)
		if value == nil {
			delete(o.vms, name)
			return nil
		}
		var d vmDoc
		if err := json.Unmarshal(value, &d); err != nil {
			return err
		}
		slices.SortFunc(d.Adapters, byName)
		o.vms[name] = d
	}
	return nil
}

// diff returns the operations that turn prev (nil: nothing) into next,
// state/rev not included: a put of each object config.Compare finds
// changed, a delete of each gone.
func diff(prefix string, prev, next *config.Config) ([]clientv3.Op, error) {
	var ops []clientv3.Op
	put := func(key string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(prefix+key, string(raw)))
		return nil
	}
	ch := config.Compare(cmp.Or(prev, &config.Config{}), next)
	if prev == nil || ch.Host {
		if err := put(keyHostDoc, next.Host); err != nil {
			return nil, err
		}
	}
	for _, sc := range ch.Switches {
		if sc.New == nil {
			ops = append(ops, clientv3.OpDelete(prefix+keySwitch+sc.Name))
		} else if err := put(keySwitch+sc.Name, sc.New); err != nil {
			return nil, err
		}
	}
	for _, vc := range ch.VMs {
		if vc.New == nil {
			ops = append(ops, clientv3.OpDelete(prefix+keyVM+vc.Name))
			continue
		}
		d := vmDoc{VM: *vc.New}
		for _, a := range vc.Adapters {
			d.Adapters = append(d.Adapters, *a)
		}
		if err := put(keyVM+vc.Name, d); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// fromKVs reads a whole state (a range of the state prefix) and its revision.
func fromKVs(prefix string, kvs []*mvccpb.KeyValue) (*objects, uint64, error) {
	o, rev := newObjects(), uint64(0)
	for _, kv := range kvs {
		k := strings.TrimPrefix(string(kv.Key), prefix)
		if k == keyRev {
			rev = uint64(kv.ModRevision)
			continue
		}
		if err := o.apply(k, kv.Value); err != nil {
			return nil, 0, fmt.Errorf("%w: the cluster's state, key %s: %w", store.ErrCorrupt, k, err)
		}
	}
	if rev == 0 {
		return nil, 0, fmt.Errorf("%w: the cluster has no state (no %s)", store.ErrCorrupt, keyRev)
	}
	return o, rev, nil
}
