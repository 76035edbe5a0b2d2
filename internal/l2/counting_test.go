package l2

import (
	"maps"
	"testing"

	"github.com/vswitch/vswitch/internal/port/mem"
)

// countingPort is an in-memory port whose backend keeps counters.
type countingPort struct {
	*mem.Port
	counters map[string]uint64
}

func (p countingPort) BackendCounters() map[string]uint64 { return maps.Clone(p.counters) }

var _ CountingPort = countingPort{}

func TestPortsReportBackendCounters(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("plain", PortConfig{})
	sw, _ := mem.NewPair(mem.Config{})
	if err := h.s.AddPort("vm", countingPort{sw, map[string]uint64{"bad-peers": 2, "oversize": 0}}, PortConfig{}); err != nil {
		t.Fatal(err)
	}
	ports := h.s.Ports()
	if len(ports) != 2 || ports[0].Name != "plain" || ports[1].Name != "vm" {
		t.Fatalf("ports %+v", ports)
	}
	if ports[0].Backend != nil {
		t.Errorf("a port without counters of its own reports %v", ports[0].Backend)
	}
	if b := ports[1].Backend; len(b) != 2 || b["bad-peers"] != 2 {
		t.Errorf("backend counters %v, want bad-peers=2 and oversize=0", b)
	}
}
