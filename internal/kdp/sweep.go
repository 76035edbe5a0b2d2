package kdp

import (
	"time"

	"github.com/cilium/ebpf"
)

// Sweep intervals: a switch's aged entries are deleted every eighth of
// its ageing time, within these bounds, and at once when it is full.
const (
	minSweepEvery = time.Second
	maxSweepEvery = 30 * time.Second
)

// sweeper deletes aged learned entries until Close: the program only
// treats them as gone, and they would hold their switch's share of the
// table (and the table) until deleted. The core sweeps the same way.
func (d *Datapath) sweeper() {
	defer close(d.sweepDone)
	t := time.NewTimer(d.sweepEvery())
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-d.stop:
			return
		case <-d.resched: // a switch's ageing changed: it may be due sooner
			t.Reset(max(d.sweepEvery()-time.Since(last), 0)) // (no stale tick survives a Reset since Go 1.23)
			continue
		case <-t.C:
		case <-d.sweepNow:
			if time.Since(last) < minSweepEvery { // a full switch sweeps at most once a second
				select {
				case <-d.stop:
					return
				case <-time.After(minSweepEvery - time.Since(last)):
				}
			}
		}
		last = time.Now()
		d.sweep()
		t.Reset(d.sweepEvery())
	}
}

// sweepEvery is an eighth of the shortest ageing time of the switches.
func (d *Datapath) sweepEvery() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	every := maxSweepEvery
	for _, s := range d.switches {
		every = min(every, time.Duration(s.Ageing)/8)
	}
	return max(every, minSweepEvery)
}

// sweep deletes the learned entries that aged out (and any of a switch
// the data path no longer has), giving their places in the table and in
// their switch's limit to new stations.
func (d *Datapath) sweep() {
	now, err := monotonicNow()
	if err != nil {
		return
	}
	d.mu.Lock()
	ageing := make(map[uint32]uint64, len(d.switches))
	for num, s := range d.switches {
		ageing[num] = s.Ageing
	}
	d.mu.Unlock()
	dead := func(k *kdpFdbKey, v *kdpFdbVal) bool {
		a, ok := ageing[k.Sw]
		return !ok || aged(v, now, a)
	}
	gone := d.learnedWhere(dead)
	if len(gone) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	// Again with the switches as they are now (one made since the read
	// above keeps its entries) and the time now (an entry seen since is
	// not aged).
	if now, err = monotonicNow(); err != nil {
		return
	}
	d.deleteLearned(gone, func(k *kdpFdbKey, v *kdpFdbVal) bool {
		s := d.switches[k.Sw]
		return s == nil || aged(v, now, s.Ageing)
	})
}

// aged reports whether a learned entry was last seen ageing or longer
// before now (one seen after now, which was read earlier, is not).
func aged(v *kdpFdbVal, now, ageing uint64) bool {
	return v.Seen <= now && now-v.Seen >= ageing
}

// deleteLearned deletes learned entries (those still dead, if dead is
// set: the program may have refreshed one since it was read) and counts
// them as their switches' and ports' removed entries; d.mu is held.
func (d *Datapath) deleteLearned(keys []kdpFdbKey, dead func(*kdpFdbKey, *kdpFdbVal) bool) {
	removed := map[uint32]uint64{}
	fromPort := map[uint32]uint64{} // by the port's interface
	for _, k := range keys {
		var v kdpFdbVal
		if d.objs.Fdb.Lookup(&k, &v) != nil || dead != nil && !dead(&k, &v) {
			continue
		}
		if d.objs.Fdb.Delete(&k) == nil { // not when another deleted it first
			removed[k.Sw]++
			fromPort[v.Ifindex]++
		}
	}
	for num, r := range removed {
		if d.switches[num] == nil || num > MaxSwitches {
			continue // counted afresh when the number is used again
		}
		addCount(d.objs.Learned, 2*num+1, r)
	}
	if len(fromPort) == 0 {
		return
	}
	for _, p := range d.ports {
		if r := fromPort[uint32(p.ifindex)]; r > 0 {
			addCount(d.objs.Portlearned, 2*p.slot+1, r) // a port that went is counted afresh with its slot
		}
	}
}

// addCount adds n to element i of a count map that only vswitchd writes.
func addCount(m *ebpf.Map, i uint32, n uint64) {
	var have uint64
	if m.Lookup(i, &have) == nil {
		m.Put(i, have+n)
	}
}
