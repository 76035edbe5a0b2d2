// Package l2 is vswitch's switch core: the 802.1Q port model, the MAC table
// (FDB) and the forwarding decision. It does no I/O of its own: frames come
// from and go to Ports, which backends under internal/port implement
// without importing this package.
//
// A Switch runs one reader goroutine per port. Each reader reads a batch,
// loads the configuration snapshot once, decides every frame (classify
// into a VLAN, check the source, learn, look up or flood, tag or untag for
// each egress port), groups the results by egress port and writes one batch
// per port. Nothing on that path allocates, locks the configuration or
// returns an error: per-frame problems are counters.
package l2
