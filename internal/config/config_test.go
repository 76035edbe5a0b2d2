package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
)

func boolp(b bool) *bool { return &b }

// sample is a valid state with every switch type, mode and attachment.
func sample() *Config {
	return &Config{
		Host: Host{MACMin: frame.MustParseMAC("02:56:53:07:00:00"), MACMax: frame.MustParseMAC("02:56:53:07:00:ff")},
		Switches: []Switch{
			{Name: "ext0", Type: External, Uplink: "eth1", HostVLAN: VLAN{Mode: ModeAccess, Access: 10}},
			{Name: "int0", Type: Internal, DefaultVLAN: 5},
			{Name: "priv0", Type: Private, MACAgeing: Duration(60e9), TableSize: 1000},
		},
		VMs: []VM{{Name: "web"}, {Name: "db"}},
		Adapters: []Adapter{
			{VM: "web", Name: "eth0", Switch: "ext0", MAC: frame.MustParseMAC("02:56:53:07:00:00"), DynamicMAC: true,
				VLAN:       VLAN{Mode: ModeTrunk, Allowed: frame.MustParseVLANSet("10-20"), Native: 1},
				Attachment: Attachment{Kind: AttachNetns, Namespace: "web"}},
			{VM: "web", Name: "eth1", Switch: "priv0", MAC: frame.MustParseMAC("52:54:00:00:00:01"), Type: Legacy,
				VLAN:       VLAN{Mode: ModeHybrid, PVID: 10, Untagged: frame.MustParseVLANSet("10,20"), Tagged: frame.MustParseVLANSet("30-40")},
				Attachment: Attachment{Kind: AttachQEMUStream}},
			{VM: "db", Name: "eth0", Switch: "int0", MAC: frame.MustParseMAC("02:56:53:07:00:01"), DynamicMAC: true,
				VLAN: VLAN{Mode: ModeAccess, Access: 20}, Attachment: Attachment{Kind: AttachTAP, Device: "vnet3"}},
		},
	}
}

func TestSampleIsValidAndRoundTrips(t *testing.T) {
	c := sample()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := Decode(bytes.NewReader(b), &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(&back)
	if !bytes.Equal(b, b2) {
		t.Fatalf("JSON round trip changed the state:\n%s\n%s", b, b2)
	}
	if !strings.Contains(string(b), `"allowed":"10-20"`) || !strings.Contains(string(b), `"macAgeing":"1m0s"`) {
		t.Fatalf("JSON form: %s", b)
	}
}

// tooManyPorts puts the private switch on data path d with one adapter
// more than the kernel data path takes (its own port makes 1,026).
func tooManyPorts(d Datapath) func(*Config) {
	return func(c *Config) {
		c.Switches[2].Datapath = d
		for i := range MaxKernelPorts + 1 {
			c.Adapters = append(c.Adapters, Adapter{VM: "db", Name: fmt.Sprint("k", i), Switch: "priv0", MAC: frame.MAC{2, 0, 0, 1, byte(i >> 8), byte(i)},
				Attachment: Attachment{Kind: AttachTAP, Device: fmt.Sprint("vk", i)}})
		}
	}
}

// TestBadInput changes one thing in a valid state and checks that the
// error names the field, the value and what is allowed.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"access VLAN 0", func(c *Config) { c.Adapters[2].VLAN.Access = 0 }, []string{`adapters[db/eth0].vlan.access "0"`, "1 to 4094"}},
		{"access VLAN 4095", func(c *Config) { c.Adapters[2].VLAN.Access = 4095 }, []string{`vlan.access "4095"`}},
		{"access VLAN 5000", func(c *Config) { c.Adapters[2].VLAN.Access = 5000 }, []string{`vlan.access "5000"`}},
		{"hybrid overlap", func(c *Config) { c.Adapters[1].VLAN.Tagged = frame.MustParseVLANSet("20-40") },
			[]string{"adapters[web/eth1].vlan.tagged", "20 is in both sets"}},
		{"hybrid PVID in neither set", func(c *Config) { c.Adapters[1].VLAN.PVID = 99 }, []string{`vlan.pvid "99"`}},
		{"field of another mode", func(c *Config) { c.Adapters[2].VLAN.Native = 3 }, []string{"adapters[db/eth0].vlan.native", "only with mode trunk"}},
		{"unknown VLAN mode", func(c *Config) { c.Adapters[2].VLAN.Mode = "dot1q" }, []string{`vlan.mode "dot1q"`, "untagged, access, trunk or hybrid"}},
		{"multicast MAC", func(c *Config) { c.Adapters[1].MAC = frame.MustParseMAC("01:00:5e:00:00:01") }, []string{"adapters[web/eth1].mac", "unicast"}},
		{"MAC in use", func(c *Config) { c.Adapters[1].MAC = c.Adapters[0].MAC }, []string{"adapters[web/eth1].mac", "web/eth0 has it"}},
		{"no MAC", func(c *Config) { c.Adapters[1].MAC = frame.MAC{} }, []string{"adapters[web/eth1].mac", "dynamicMAC"}},
		{"pool min > max", func(c *Config) { c.Host.MACMin, c.Host.MACMax = c.Host.MACMax, c.Host.MACMin }, []string{"host.macMin", "at most host.macMax"}},
		{"multicast pool", func(c *Config) { c.Host.MACMax = frame.Broadcast }, []string{"host.macMax", "unicast"}},
		{"duplicate switch", func(c *Config) { c.Switches[1].Name = "ext0" }, []string{"switches[ext0].name", "no other switch"}},
		{"bad switch name", func(c *Config) { c.Switches[1].Name = "a name with spaces" }, []string{"switches[1].name", "Linux interface"}},
		{"switch name too long", func(c *Config) { c.Switches[2].Name = "sixteen-chars-xx" }, []string{"switches[2].name", "1 to 15"}},
		{"duplicate VM", func(c *Config) { c.VMs[1].Name = "web" }, []string{"vms[1].name", "no other VM"}},
		{"duplicate adapter", func(c *Config) { c.Adapters[1].Name = "eth0" }, []string{"adapters[web/eth0].name", "no other adapter"}},
		{"uplink shared", func(c *Config) { c.AddSwitch(Switch{Name: "ext1", Type: External, Uplink: "eth1"}) },
			[]string{"switches[ext1].uplink", "ext0 has it"}},
		{"external without uplink", func(c *Config) { c.Switches[0].Uplink = "" }, []string{"switches[ext0].uplink", "physical NIC"}},
		{"uplink on internal", func(c *Config) { c.Switches[1].Uplink = "eth9" }, []string{"switches[int0].uplink", "only on an external"}},
		{"bad type", func(c *Config) { c.Switches[1].Type = "bridged" }, []string{"switches[int0].type", "external, internal or private"}},
		{"host VLAN without host adapter", func(c *Config) { c.Switches[0].AllowManagementOS = boolp(false) },
			[]string{"switches[ext0].hostVLAN", "only on a switch with a host adapter"}},
		{"adapter on missing switch", func(c *Config) { c.Adapters[2].Switch = "nope" }, []string{"adapters[db/eth0].switch", "existing switch"}},
		{"adapter of missing VM", func(c *Config) { c.Adapters[2].VM = "ghost" }, []string{"adapters[ghost/eth0].vm", "existing VM"}},
		{"bad adapter type", func(c *Config) { c.Adapters[2].Type = "e1000" }, []string{"adapters[db/eth0].type", "synthetic"}},
		{"netns without namespace", func(c *Config) { c.Adapters[0].Attachment.Namespace = "" }, []string{"adapters[web/eth0].attachment.namespace"}},
		{"relative socket", func(c *Config) { c.Adapters[1].Attachment.Socket = "vm.sock" }, []string{"attachment.socket", "absolute path"}},
		{"bad attachment", func(c *Config) { c.Adapters[1].Attachment.Kind = "vhost" }, []string{"attachment.kind", "netns, tap, qemu-stream or qemu-dgram"}},
		{"ageing too short", func(c *Config) { c.Switches[2].MACAgeing = Duration(1e6) }, []string{"switches[priv0].macAgeing", "1s to 24h"}},
		{"table size", func(c *Config) { c.Switches[2].TableSize = -1 }, []string{"switches[priv0].tableSize"}},
		{"a table past the kernel data path's", func(c *Config) { c.Switches[2].TableSize, c.Switches[2].Datapath = 2<<20, Auto },
			[]string{`switches[priv0].tableSize "2097152"`, "at most 1048576 entries on the kernel data path"}},
		{"a bad MAC limit", func(c *Config) { c.Adapters[0].MACLimit = -3 }, []string{`adapters[web/eth0].macLimit "-3"`}},
		{"unknown data path", func(c *Config) { c.Switches[1].Datapath = "dpdk" }, []string{"switches[int0].datapath", "auto, kernel or userspace"}},
		{"too many ports for the kernel data path", tooManyPorts(Kernel), []string{"switches[priv0].datapath", "at most 1024"}},
		{"too many ports for an auto switch (the kernel data path where a host has it)", tooManyPorts(Auto),
			[]string{"switches[priv0].datapath", "userspace for a switch of 1026 ports"}},
		{"VM memory", func(c *Config) { c.VMs[0].Memory = 8 }, []string{"vms[web].memoryMiB", "32 to"}},
		{"relative kernel", func(c *Config) { c.VMs[0].Kernel = "vmlinux" }, []string{"vms[web].kernel", "absolute path"}},
		{"initrd without kernel", func(c *Config) { c.VMs[0].Initrd = "/boot/initrd" }, []string{"vms[web].initrd", "only with a kernel"}},
		{"network boot from a missing adapter", func(c *Config) { c.VMs[0].NetworkBoot = "eth9" }, []string{"vms[web].networkBoot", "one of the VM's adapters"}},
	}
	for _, tt := range tests {
		c := sample()
		tt.change(c)
		err := c.Validate()
		if err == nil || !errors.Is(err, field.ErrInvalid) {
			t.Errorf("%s: Validate = %v, want a field error", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tt.name, err, w)
			}
		}
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	c := sample()
	c.Switches[1].Type = "bridged"
	c.Adapters[2].VLAN.Access = 5000
	c.AddVM(VM{Name: "web"})
	if n := len(field.All(c.Validate())); n != 3 {
		t.Fatalf("%d problems reported, want 3: %v", n, c.Validate())
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"host":{},"switchez":[]}`, `unknown field "switchez"`},
		{`{"vlan":{"mode":"trunk","allowed":"1-100,50-"}}`, `invalid VLAN "1-100,50-" at offset 9`},
		{`{"mac":"02:56:53:zz:00:01"}`, `invalid MAC address "02:56:53:zz:00:01"`},
		{`{"vm":"a"} {"vm":"b"}`, "more than one value"},
		{`{"vm":"a"} x`, "invalid JSON"},
		{`{"macAgeing":"soon"}`, "want a number with a unit"},
	}
	for _, tt := range tests {
		var a struct {
			Host      *Host    `json:"host"`
			Switches  []Switch `json:"switches"`
			VLAN      VLAN     `json:"vlan"`
			MAC       frame.MAC
			VM        string   `json:"vm"`
			MACAgeing Duration `json:"macAgeing"`
		}
		err := Decode(strings.NewReader(tt.in), &a)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
	big := `{"vm":"` + strings.Repeat("x", MaxDocument) + `"}`
	var a Adapter
	if err := Decode(strings.NewReader(big), &a); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized document: %v", err)
	}
}

func TestRemoveSwitchWithAdapters(t *testing.T) {
	c := sample()
	err := c.RemoveSwitch("ext0", false)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "web/eth0") {
		t.Fatalf("RemoveSwitch without force = %v", err)
	}
	if c.Switch("ext0") == nil || c.Adapter("web", "eth0") == nil {
		t.Fatal("a refused removal changed the state")
	}
	if err := c.RemoveSwitch("ext0", true); err != nil {
		t.Fatal(err)
	}
	if c.Switch("ext0") != nil || c.Adapter("web", "eth0") != nil || c.Adapter("db", "eth0") == nil {
		t.Fatal("forced removal did not remove exactly the switch and its adapters")
	}
	if err := c.RemoveSwitch("ext0", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second removal: %v", err)
	}
	if err := c.RemoveVM("web", false); !errors.Is(err, ErrInUse) {
		t.Fatalf("RemoveVM with adapters: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestMACPool(t *testing.T) {
	c := &Config{Host: Host{MACMin: frame.MustParseMAC("02:00:00:00:00:00"), MACMax: frame.MustParseMAC("02:00:00:00:00:09")}}
	c.Switches = []Switch{{Name: "p", Type: Private}}
	c.VMs = []VM{{Name: "vm"}}
	add := func(name string, mac frame.MAC) (Adapter, bool, error) {
		return c.AddAdapter(Adapter{VM: "vm", Name: name, Switch: "p", MAC: mac, DynamicMAC: mac.IsZero(), Attachment: Attachment{Kind: AttachQEMUDgram}})
	}
	a, _, _ := add("a", frame.MAC{})
	add("static", frame.MustParseMAC("02:00:00:00:00:01")) // a static address inside the pool is held
	b, _, _ := add("b", frame.MAC{})
	if a.MAC.String() != "02:00:00:00:00:00" || b.MAC.String() != "02:00:00:00:00:02" {
		t.Fatalf("dynamic MACs %s, %s; want the lowest free (…:00, then …:02)", a.MAC, b.MAC)
	}
	c.RemoveAdapter("vm", "a")
	if again, _, _ := add("c", frame.MAC{}); again.MAC != a.MAC {
		t.Fatalf("after release got %s, want the freed %s", again.MAC, a.MAC)
	}
	var nearly bool
	for i := range 7 { // fills the pool: 10 addresses
		var err error
		if _, nearly, err = add(string(rune('d'+i)), frame.MAC{}); err != nil {
			t.Fatal(err)
		}
		if used, size := c.PoolUsage(); (used*10 >= size*9) != nearly {
			t.Fatalf("at %d of %d used, nearly full = %v", used, size, nearly)
		}
	}
	if !nearly {
		t.Fatal("a full pool did not warn")
	}
	if _, _, err := add("z", frame.MAC{}); !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), "all 10 addresses") {
		t.Fatalf("exhausted pool: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	h := DefaultHost("0123456789abcdef")
	if h.MACMin[0] != 0x02 || h.MACMin[1] != 0x56 || h.MACMin[2] != 0x53 || h.MACMin[3] != h.MACMax[3] ||
		h.MACMin[4] != 0 || h.MACMax[4] != 0xff || h.MACMax[5] != 0xff {
		t.Fatalf("default pool %s–%s", h.MACMin, h.MACMax)
	}
}

func TestSetAdapterKeepsDynamicMAC(t *testing.T) {
	c := sample()
	a := *c.Adapter("web", "eth0")
	mac := a.MAC
	a.MAC, a.VLAN = frame.MAC{}, VLAN{Mode: ModeAccess, Access: 7}
	if err := c.SetAdapter(a); err != nil {
		t.Fatal(err)
	}
	if got := c.Adapter("web", "eth0"); got.MAC != mac || got.VLAN.Access != 7 {
		t.Fatalf("after SetAdapter: MAC %s (was %s), VLAN %s", got.MAC, mac, got.VLAN.String())
	}
}

// A new switch that names no data path is auto; an edit that names none
// keeps the switch's, also the core of a switch stored before auto ("").
func TestDatapathDefaults(t *testing.T) {
	c := sample()
	c.AddSwitch(Switch{Name: "new0", Type: Private})
	if got := c.Switch("new0").Datapath; got != Auto {
		t.Fatalf("a new switch's data path = %q, want auto", got)
	}
	for _, tc := range []struct{ had, set, want Datapath }{
		{Auto, "", Auto}, {"", "", ""}, {Kernel, "", Kernel}, {Auto, Userspace, Userspace}, {"", Auto, Auto},
	} {
		c.Switch("new0").Datapath = tc.had
		s := *c.Switch("new0")
		s.Datapath, s.Notes = tc.set, "edited"
		if err := c.SetSwitch(s); err != nil {
			t.Fatal(err)
		}
		if got := c.Switch("new0"); got.Datapath != tc.want || got.Notes != "edited" {
			t.Errorf("had %q, set %q: data path %q, want %q", tc.had, tc.set, got.Datapath, tc.want)
		}
	}
	for _, tc := range []struct {
		d          Datapath
		kernel     bool
		wantKernel bool
	}{{Auto, true, true}, {Auto, false, false}, {Kernel, false, true}, {"", true, false}, {Userspace, true, false}} {
		s := Switch{Datapath: tc.d}
		if got := s.OnKernel(tc.kernel); got != tc.wantKernel {
			t.Errorf("%q on a host with the kernel data path %v: OnKernel = %v", tc.d, tc.kernel, got)
		}
	}
}

// Clone copies field by field: a field holding a pointer, slice or map
// that Clone does not know about would be shared between copies.
func TestCloneKnowsEveryField(t *testing.T) {
	known := map[string]bool{
		"Config.Switches": true, "Config.VMs": true, "Config.Adapters": true,
		"Switch.AllowManagementOS": true, "Adapter.MACSpoofGuard": true,
	}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			name := ty.Name() + "." + f.Name
			switch f.Type.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func:
				if !known[name] {
					t.Errorf("%s (%s) is not deep-copied by Clone", name, f.Type)
				}
				if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
					walk(f.Type.Elem())
				}
			case reflect.Struct:
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeOf(Config{}))

	yes := true
	c := &Config{Switches: []Switch{{Name: "s", AllowManagementOS: &yes}}, VMs: []VM{{Name: "v"}},
		Adapters: []Adapter{{VM: "v", Name: "a", MACSpoofGuard: &yes}}}
	d := c.Clone()
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("clone differs: %+v", d)
	}
	*d.Switches[0].AllowManagementOS, *d.Adapters[0].MACSpoofGuard = false, false
	d.VMs[0].Name = "w"
	if !*c.Switches[0].AllowManagementOS || !*c.Adapters[0].MACSpoofGuard || c.VMs[0].Name != "v" {
		t.Fatal("changing the clone changed the original")
	}
}

func TestEqual(t *testing.T) {
	yes, yes2, no := true, true, false
	a := Adapter{VM: "v", Name: "n", Switch: "s", MACSpoofGuard: &yes}
	b := a
	b.MACSpoofGuard = &yes2
	c := a
	c.VLAN = VLAN{Mode: ModeAccess, Access: 10}
	d := a
	d.MACSpoofGuard = &no
	for _, tt := range []struct {
		name string
		x, y *Adapter
		want bool
	}{
		{"same values, other pointers", &a, &b, true},
		{"other VLAN", &a, &c, false},
		{"other guard", &a, &d, false},
		{"nil and one", nil, &a, false},
		{"both nil", nil, nil, true},
	} {
		if got := tt.x.Equal(tt.y); got != tt.want {
			t.Errorf("%s: Equal = %v", tt.name, got)
		}
	}
	s := Switch{Name: "e", Type: External, AllowManagementOS: &yes}
	s2 := s
	s2.AllowManagementOS = &no
	if !s.Equal(&Switch{Name: "e", Type: External, AllowManagementOS: &yes2}) || s.Equal(&s2) || (*Switch)(nil).Equal(&s) {
		t.Error("Switch.Equal")
	}
	c1 := &Config{Adapters: []Adapter{a}}
	c2 := c1.Clone()
	if !c1.Equal(c2) || !(&Config{}).Equal(&Config{Adapters: []Adapter{}}) {
		t.Error("Config.Equal of copies, or of no list and an empty one")
	}
	c2.Adapters[0].Name = "m"
	if c1.Equal(c2) {
		t.Error("Config.Equal missed a renamed adapter")
	}
}
