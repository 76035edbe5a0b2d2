package config

import (
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
)

// clusterSample is a valid state of a cluster: a switch spanning every
// host, one spanning two, a local switch of h2, VMs on three hosts.
func clusterSample() *Config {
	mac := func(i int) frame.MAC { return frame.MAC{2, 0x56, 0x53, 0, 0, byte(i)} }
	return &Config{
		Host: Host{MACMin: mac(0), MACMax: mac(255)},
		Switches: []Switch{
			{Name: "lan0", Type: Private, Span: true, VNI: 1},
			{Name: "lan1", Type: Internal, Span: true, Hosts: "h1,h2", VNI: 7},
			{Name: "loc2", Type: Private, Host: "h2"},
		},
		VMs: []VM{{Name: "a", Host: "h1"}, {Name: "b", Host: "h2"}, {Name: "c", Host: "h3"}},
		Adapters: []Adapter{
			{VM: "a", Name: "eth0", Switch: "lan0", MAC: mac(1), Attachment: Attachment{Kind: AttachTAP, Device: "tap0"}},
			{VM: "b", Name: "eth0", Switch: "lan1", MAC: mac(2), Attachment: Attachment{Kind: AttachTAP, Device: "tap0"}}, // another host: the same name is free
			{VM: "b", Name: "eth1", Switch: "loc2", MAC: mac(3), Attachment: Attachment{Kind: AttachNetns, Namespace: "b"}},
			{VM: "c", Name: "eth0", Switch: "lan0", MAC: mac(4), Attachment: Attachment{Kind: AttachNetns, Namespace: "b"}}, // so is a namespace
		},
	}
}

func TestClusterStateValidates(t *testing.T) {
	if err := clusterSample().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestClusterRefusals: every cluster field's bad value is named, with
// what is allowed.
func TestClusterRefusals(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edit  func(*Config)
		field string
		want  string
	}{
		{"VNI out of range", func(c *Config) { c.Switches[0].VNI = MaxVNI + 1 }, "switches[lan0].vni", "1 to 16777215"},
		{"VNI zero on a spanning switch", func(c *Config) { c.Switches[0].VNI = 0 }, "switches[lan0].vni", "1 to 16777215"},
		{"VNI taken", func(c *Config) { c.Switches[1].VNI = 1 }, "switches[lan1].vni", "switch lan0 has it"},
		{"VNI on a local switch", func(c *Config) { c.Switches[2].VNI = 9 }, "switches[loc2].vni", "only on a spanning switch"},
		{"hosts on a local switch", func(c *Config) { c.Switches[2].Hosts = "h1" }, "switches[loc2].hosts", "only on a spanning switch"},
		{"a host twice", func(c *Config) { c.Switches[1].Hosts = "h1,h1" }, "switches[lan1].hosts", "each once"},
		{"a host on a spanning switch", func(c *Config) { c.Switches[0].Host = "h1" }, "switches[lan0].host", "empty on a spanning switch"},
		{"bad host name", func(c *Config) { c.VMs[0].Host = "h 1" }, "vms[a].host", "a host name"},
		{"switch not on the VM's host", func(c *Config) { c.Adapters[0].Switch = "loc2" }, "adapters[a/eth0].switch", "a switch on host h1"},
		{"spanning switch not on the VM's host", func(c *Config) { c.Adapters[3].Switch = "lan1" }, "adapters[c/eth0].switch", "on hosts h1,h2"},
		{"TAP name taken on one host", func(c *Config) {
			c.VMs[2].Host = "h1"
			c.Adapters[3].Attachment = Attachment{Kind: AttachTAP, Device: "tap0"}
		},
			"adapters[c/eth0].attachment.device", "the TAP of adapter a/eth0 has it"},
		{"remote VTEP not an address", func(c *Config) { c.Switches[0].RemoteVTEPs = "10.0.0.1,nope" }, "switches[lan0].remoteVTEPs", "unicast IP addresses"},
		{"remote VTEPs on a local switch", func(c *Config) { c.Switches[2].RemoteVTEPs = "10.0.0.1" }, "switches[loc2].remoteVTEPs", "only on a spanning switch"},
		{"MAC in use on another host", func(c *Config) { c.Adapters[3].MAC = c.Adapters[0].MAC }, "adapters[c/eth0].mac", "a/eth0 has it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := clusterSample()
			tt.edit(c)
			err := c.Validate()
			for _, fe := range field.All(err) {
				if fe.Field == tt.field && strings.Contains(fe.Error(), tt.want) {
					return
				}
			}
			t.Fatalf("want %s refused saying %q; got %v", tt.field, tt.want, err)
		})
	}
}

func TestForHost(t *testing.T) {
	c := clusterSample()
	for host, want := range map[string][2]string{
		"h1": {"lan0,lan1", "a/eth0"},
		"h2": {"lan0,lan1,loc2", "b/eth0,b/eth1"},
		"h3": {"lan0", "c/eth0"},
		"h4": {"lan0", ""},
	} {
		l := c.ForHost(host)
		var sws, ads []string
		for _, s := range l.Switches {
			sws = append(sws, s.Name)
		}
		for _, a := range l.Adapters {
			ads = append(ads, a.ID())
		}
		if got := [2]string{strings.Join(sws, ","), strings.Join(ads, ",")}; got != want {
			t.Errorf("ForHost(%s): switches, adapters %q; want %q", host, got, want)
		}
	}
	if vni, _ := c.AllocateVNI(); vni != 2 {
		t.Errorf("AllocateVNI: %d, want 2 (the lowest free)", vni)
	}
}

func TestChangedHosts(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"nothing", func(*Config) {}, ""},
		{"an adapter of a VM on h3", func(c *Config) { c.Adapters[3].VLAN = VLAN{Mode: ModeAccess, Access: 10} }, "h3"},
		{"a VM moved", func(c *Config) { c.VMs[0].Host = "h3" }, "h1,h3"},
		{"h2's local switch", func(c *Config) { c.Switches[2].Notes = "x" }, "h2"},
		{"a switch spanning two hosts", func(c *Config) { c.Switches[1].Notes = "x" }, "h1,h2"},
		{"a switch spanning all", func(c *Config) { c.Switches[0].Notes = "x" }, "*"},
		{"a VM removed", func(c *Config) { c.VMs = c.VMs[:2]; c.Adapters = c.Adapters[:3] }, "h3"},
		{"the pool", func(c *Config) { c.Host.MACMax = frame.MAC{2, 0x56, 0x53, 0, 1, 0} }, "*"},
	} {
		next := clusterSample()
		tt.edit(next)
		got := ChangedHosts(clusterSample(), next)
		var hs []string
		for _, h := range []string{"*", "h1", "h2", "h3"} {
			if got[h] {
				hs = append(hs, h)
			}
		}
		if strings.Join(hs, ",") != tt.want {
			t.Errorf("%s: hosts %v, want %s", tt.name, hs, tt.want)
		}
	}
}
