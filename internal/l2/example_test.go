package l2_test

import (
	"fmt"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/vlan"
)

// A switch with a trunk uplink and two access ports: a broadcast tagged 10
// on the trunk reaches only the VLAN 10 port, untagged.
func Example() {
	sw, err := l2.New(l2.Options{Name: "demo"})
	if err != nil {
		panic(err)
	}
	defer sw.Close()

	trunk, _ := vlan.Trunk(frame.MustParseVLANSet("10,20"), 0)
	v10, _ := vlan.Access(10)
	v20, _ := vlan.Access(20)
	peers := map[string]*mem.Port{}
	for name, vlan := range map[string]vlan.Port{"uplink": trunk, "vm10": v10, "vm20": v20} {
		swEnd, peer := mem.NewPair(mem.Config{})
		if err := sw.AddPort(name, swEnd, l2.PortConfig{VLAN: vlan}); err != nil {
			panic(err)
		}
		peers[name] = peer
	}

	// ff:ff:ff:ff:ff:ff ← 02:00:00:00:00:01, 802.1Q VLAN 10, ARP.
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x06}
	f = append(f, make([]byte, 46)...)
	peers["uplink"].Write([][]byte{f}, []int{0})

	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	peers["vm10"].Read(bufs, sizes, 0) // blocks until the switch delivers
	e := frame.Ethernet(bufs[0][:sizes[0]])
	fmt.Printf("vm10 got %d bytes from %s, tagged: %v, EtherType %#04x\n", sizes[0], e.Src(), e.Tagged(), e.EtherType())
	fmt.Println("vm20 queued:", peers["vm20"].Queued())
	// Output:
	// vm10 got 60 bytes from 02:00:00:00:00:01, tagged: false, EtherType 0x0806
	// vm20 queued: 0
}
