package daemon

import (
	"time"

	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
)

// The kernel data path's station moves are reported as the core reports
// its own (l2.MoveLimiter, l2.LogMove): at most l2.DefaultMoveReports a
// second per switch, the rest counted (LiveSwitch.SuppressedMoves).

// moveLimitOf is switch name's limiter, kept while the switch is.
func (d *Daemon) moveLimitOf(name string) *l2.MoveLimiter {
	v, _ := d.kmoves.LoadOrStore(name, &l2.MoveLimiter{PerSecond: l2.DefaultMoveReports})
	return v.(*l2.MoveLimiter)
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
	if kv.moves.Allow(time.Now().UnixNano()) {
		l2.LogMove(d.log, l2.Move{Switch: m.Switch, MAC: m.MAC, VID: m.VID, From: kv.portOf(m.From), To: kv.portOf(m.To)})
	}
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

// fdbSnapshotOf is switch name's MAC table snapshot, kept while the switch is.
func (d *Daemon) fdbSnapshotOf(name string) *fdbSnapshot {
	v, _ := d.kfdb.LoadOrStore(name, &fdbSnapshot{})
	return v.(*fdbSnapshot)
}
