package netnstest

import (
	"testing"
	"time"
)

// A veth pair between two fresh namespaces: ping works both ways, and the
// namespaces are gone after the test (checked by the cleanup's own errors).
func TestVethPing(t *testing.T) {
	a, b := New(t), New(t)
	Veth(t, a, "eth0", b, "eth0")
	a.AddAddr(t, "eth0", "10.99.0.1/24")
	b.AddAddr(t, "eth0", "10.99.0.2/24")
	if err := a.Ping(t, "10.99.0.2", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(t, "10.99.0.1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := a.Addrs(t, "eth0"); len(got) == 0 || got[0] != "10.99.0.1/24" {
		t.Fatalf("addresses of a/eth0 = %v", got)
	}
}

func TestPingFailsWithoutPeer(t *testing.T) {
	a := New(t)
	Veth(t, a, "eth0", nil, UniqueName("vth"))
	a.AddAddr(t, "eth0", "10.99.1.1/24")
	if err := a.Ping(t, "10.99.1.2", 500*time.Millisecond); err == nil {
		t.Fatal("ping to an address nobody has succeeded")
	}
}
