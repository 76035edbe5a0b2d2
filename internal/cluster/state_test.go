package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
)

func state() *config.Config {
	mac := func(i int) frame.MAC { return frame.MAC{2, 0x56, 0x53, 0, 0, byte(i)} }
	return &config.Config{
		Host:     config.Host{MACMin: mac(0), MACMax: mac(255)},
		Switches: []config.Switch{{Name: "lan0", Type: config.Private, Span: true, VNI: 1}, {Name: "loc2", Type: config.Private, Host: "h2"}},
		VMs:      []config.VM{{Name: "b", Host: "h2"}, {Name: "a", Host: "h1"}},
		Adapters: []config.Adapter{
			{VM: "b", Name: "eth1", Switch: "loc2", MAC: mac(3), Attachment: config.Attachment{Kind: config.AttachTAP, Device: "t3"}},
			{VM: "a", Name: "eth0", Switch: "lan0", MAC: mac(1), Attachment: config.Attachment{Kind: config.AttachTAP, Device: "t1"},
				VLAN: config.VLAN{Mode: config.ModeTrunk, Allowed: frame.MustParseVLANSet("10-20")}},
			{VM: "b", Name: "eth0", Switch: "lan0", MAC: mac(2), Attachment: config.Attachment{Kind: config.AttachTAP, Device: "t2"}},
		},
	}
}

// TestWriteIsWhatChanged: a write's operations are only what changed, and
// replayed on the objects (as a watch does) they give the new state.
func TestWriteIsWhatChanged(t *testing.T) {
	prev := state()
	if err := prev.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		edit func(*config.Config)
		keys string
	}{
		{"nothing", func(*config.Config) {}, ""},
		{"an adapter's VLAN", func(c *config.Config) { c.Adapters[2].VLAN = config.VLAN{Mode: config.ModeAccess, Access: 5} }, "put state/vm/b"},
		{"a VM moved", func(c *config.Config) { c.VMs[1].Host = "h3" }, "put state/vm/a"},
		{"a switch removed with its adapters", func(c *config.Config) { c.Switches = c.Switches[:1]; c.Adapters = c.Adapters[1:] }, "delete state/switch/loc2,put state/vm/b"},
		{"a VM removed", func(c *config.Config) { c.VMs = c.VMs[:1]; c.Adapters = append(c.Adapters[:1], c.Adapters[2]) }, "delete state/vm/a"},
		{"the pool", func(c *config.Config) { c.Host.MACMax = frame.MAC{2, 0x56, 0x53, 0, 1, 0} }, "put state/host"},
		{"a new switch", func(c *config.Config) {
			c.Switches = append(c.Switches, config.Switch{Name: "lan9", Type: config.Private, Span: true, VNI: 9})
		}, "put state/switch/lan9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := state()
			tt.edit(next)
			if err := next.Validate(); err != nil {
				t.Fatal(err)
			}
			ops, err := diff("/p/", prev, next)
			if err != nil {
				t.Fatal(err)
			}
			objs := split(prev)
			var keys []string
			for _, op := range ops {
				k := strings.TrimPrefix(string(op.KeyBytes()), "/p/")
				var v []byte
				if op.IsPut() {
					keys = append(keys, "put "+k)
					v = op.ValueBytes()
				} else {
					keys = append(keys, "delete "+k)
				}
				if err := objs.apply(k, v); err != nil {
					t.Fatal(err)
				}
			}
			if got := strings.Join(keys, ","); got != tt.keys {
				t.Errorf("operations %q, want %q", got, tt.keys)
			}
			if got, want := objs.config(), normalise(next); !got.Equal(want) {
				t.Errorf("replayed: %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestReadWhole: a whole state read back from its keys is the state,
// sorted; a state without its revision key is refused as corrupt.
func TestReadWhole(t *testing.T) {
	s := state()
	ops, err := diff("/p/", nil, s)
	if err != nil {
		t.Fatal(err)
	}
	kvs := []*mvccpb.KeyValue{{Key: []byte("/p/" + keyRev), ModRevision: 42}}
	for _, op := range ops {
		kvs = append(kvs, &mvccpb.KeyValue{Key: op.KeyBytes(), Value: op.ValueBytes(), ModRevision: 42})
	}
	o, rev, err := fromKVs("/p/", kvs)
	if err != nil || rev != 42 {
		t.Fatalf("fromKVs: rev %d, %v", rev, err)
	}
	got := o.config()
	if !got.Equal(normalise(s)) || got.VMs[0].Name != "a" || got.Adapters[0].ID() != "a/eth0" || got.Adapters[2].ID() != "b/eth1" {
		t.Fatalf("read back: %+v", got)
	}
	if _, _, err := fromKVs("/p/", kvs[1:]); err == nil || !strings.Contains(err.Error(), "no state/rev") {
		t.Fatalf("a state without its revision: %v", err)
	}
	bad := append([]*mvccpb.KeyValue{}, kvs...)
	bad = append(bad, &mvccpb.KeyValue{Key: []byte("/p/state/vm/x"), Value: []byte("{")})
	if _, _, err := fromKVs("/p/", bad); err == nil || !strings.Contains(err.Error(), "state/vm/x") {
		t.Fatalf("a key that is not JSON: %v", err)
	}
}

// FuzzObjects: whatever a key of the state holds, reading it never
// panics, and what reads is what a state made of it holds.
func FuzzObjects(f *testing.F) {
	vm, _ := json.Marshal(vmDoc{VM: config.VM{Name: "a"}, Adapters: state().Adapters[1:2]})
	sw, _ := json.Marshal(state().Switches[0])
	for _, seed := range [][2]string{{"state/vm/a", string(vm)}, {"state/switch/lan0", string(sw)}, {"state/host", `{"macMin":"02:00:00:00:00:00"}`},
		{"state/vm/a", `{"vm":{"name":"a"},"adapters":[{"vm":"a","name":"e","vlan":{"mode":"trunk","allowed":"1-"}}]}`}, {"state/x", "\x00"}} {
		f.Add(seed[0], []byte(seed[1]))
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		o := newObjects()
		if err := o.apply(key, value); err != nil {
			return
		}
		c := o.config()
		c.Validate() // may refuse; must not panic
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("a state read from %s cannot be written: %v", key, err)
		}
	})
}
