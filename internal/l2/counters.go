package l2

import (
	"strconv"
	"sync/atomic"
)

// DropReason says why a frame was dropped. Ingress reasons are charged to
// the port the frame came in on, egress reasons (queue full, port error) to
// the port it should have left by.
type DropReason uint8

// Drop reasons.
const (
	dropNone               DropReason = iota
	DropRunt                          // shorter than an Ethernet header, or an 802.1Q tag cut off
	DropBadTag                        // tagged with the reserved VID 4095
	DropVLANNotAllowed                // tagged with a VLAN the port is not a member of
	DropTaggedOnAccess                // tagged frame on an untagged or access port
	DropUntaggedNotAllowed            // untagged frame on a trunk without a native VLAN
	DropInvalidSource                 // multicast, broadcast or all-zero source address
	DropSpoofedSource                 // source is not the adapter's MAC (spoofing guard)
	DropReservedAddress               // IEEE 802.1D reserved group address 01:80:c2:00:00:0x
	DropFiltered                      // known destination is the port it came from, or one of its split-horizon group
	DropQueueFull                     // egress port's queue was full
	DropPortError                     // egress port failed or was closed
	DropBadOffload                    // virtio-net header does not fit the frame, or a super-frame could not be cut
	DropTooBig                        // longer than the egress port's device takes (its MTU): the kernel data path checks each frame; on the core a port whose device refuses it (an AF_PACKET uplink) says so, and the frames after it are still written
	NumDropReasons                    // number of reasons, for arrays
)

var dropNames = [NumDropReasons]string{
	"none", "runt", "bad-tag", "vlan-not-allowed", "tagged-on-access", "untagged-not-allowed",
	"invalid-source", "spoofed-source", "reserved-address", "filtered", "queue-full", "port-error",
	"bad-offload", "too-big",
}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "drop(" + strconv.Itoa(int(r)) + ")"
}

// Counters is a port's traffic as the switch saw it.
type Counters struct {
	RxPackets, RxBytes uint64 // frames read from the port, dropped ones included
	TxPackets, TxBytes uint64 // frames the port accepted for sending
	Floods             uint64 // frames from this port flooded (broadcast, multicast, unknown unicast)
	LearnRefused       uint64 // source addresses not learned: table or port limit full, or a static address of another port
	Moves              uint64 // stations that moved to this port from another
	Segmented          uint64 // super-frames cut into segments in software for this port (it takes no TSO/USO)
	Drops              [NumDropReasons]uint64
}

// Dropped returns the total number of frames dropped for any reason.
func (c *Counters) Dropped() uint64 {
	var n uint64
	for _, d := range c.Drops {
		n += d
	}
	return n
}

// DropsByReason returns the non-zero drop counters by name.
func (c *Counters) DropsByReason() map[string]uint64 {
	m := make(map[string]uint64)
	for r, n := range c.Drops {
		if n != 0 {
			m[DropReason(r).String()] = n
		}
	}
	return m
}

// portCounters are a port's live counters. The port's own reader adds the
// ingress side once per batch; any reader adds egress side per write call.
type portCounters struct {
	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	floods             atomic.Uint64
	learnRefused       atomic.Uint64
	moves              atomic.Uint64
	segmented          atomic.Uint64
	drops              [NumDropReasons]atomic.Uint64
}

func (c *portCounters) snapshot() Counters {
	s := Counters{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		Floods: c.floods.Load(), LearnRefused: c.learnRefused.Load(), Moves: c.moves.Load(),
		Segmented: c.segmented.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}

// batchCounters gathers one batch's ingress counts in the reader's own
// memory, so that the shared atomics are touched once per batch.
type batchCounters struct {
	rxBytes      uint64
	floods       uint64
	learnRefused uint64
	moves        uint64
	drops        [NumDropReasons]uint64
}

func (b *batchCounters) addTo(c *portCounters, rxPackets int) {
	c.rxPackets.Add(uint64(rxPackets))
	c.rxBytes.Add(b.rxBytes)
	if b.floods != 0 {
		c.floods.Add(b.floods)
	}
	if b.learnRefused != 0 {
		c.learnRefused.Add(b.learnRefused)
	}
	if b.moves != 0 {
		c.moves.Add(b.moves)
	}
	for r, n := range b.drops {
		if n != 0 {
			c.drops[r].Add(n)
		}
	}
	*b = batchCounters{}
}
