package daemon

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/internal/kdp"
)

// The kernel data path's station moves are reported as the core reports
// its own: logged, at most moveReports a second per switch, the rest
// counted (LiveSwitch.SuppressedMoves).

const moveReports = 10 // a second, per switch, as the core's default

// moveLimit allows moveReports reports a second and counts the rest.
type moveLimit struct {
	mu         sync.Mutex
	second     int64
	used       int
	suppressed atomic.Uint64
}

func (m *moveLimit) allow(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := now.Unix(); s != m.second {
		m.second, m.used = s, 0
	}
	if m.used >= moveReports {
		m.suppressed.Add(1)
		return false
	}
	m.used++
	return true
}

// moveLimitOf is switch name's limiter, kept for the daemon's life.
func (d *Daemon) moveLimitOf(name string) *moveLimit {
	v, _ := d.kmoves.LoadOrStore(name, &moveLimit{})
	return v.(*moveLimit)
}

// KernelMove reports a station move the kernel data path saw, naming the
// ports as the switch does (an adapter's VM/NAME, "uplink", "host").
func (d *Daemon) KernelMove(m kdp.Move) {
	vs := d.view.Load().switches[m.Switch]
	if vs == nil {
		return
	}
	kv, ok := vs.sw.(*kernelView)
	if !ok {
		return
	}
	from, to := kv.portOf(m.From), kv.portOf(m.To)
	if !d.moveLimitOf(m.Switch).allow(time.Now()) {
		return
	}
	d.log.Info("station moved", "switch", m.Switch, "mac", m.MAC, "vlan", m.VID, "from", from, "to", to)
}

// portOf names the port on interface ifname ("(removed)" if none).
func (v *kernelView) portOf(ifname string) string {
	for pn, i := range v.ports {
		if i == ifname {
			return pn
		}
	}
	if ifname != "" && v.core != nil {
		return KindJoin // a QEMU socket adapter's station, behind the core
	}
	return "(removed)"
}

// fdbSnapshotOf is switch name's MAC table snapshot, kept for the daemon's life.
func (d *Daemon) fdbSnapshotOf(name string) *fdbSnapshot {
	v, _ := d.kfdb.LoadOrStore(name, &fdbSnapshot{})
	return v.(*fdbSnapshot)
}
