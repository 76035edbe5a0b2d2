// Package frame holds vswitch's Layer-2 value types and views: MAC
// addresses, 802.1Q VLAN IDs and VLAN sets, and an allocation-free view of
// an Ethernet frame with in-place tag push and pop.
//
// Addresses are comparable values whose zero value is invalid, as in
// net/netip. Frames are []byte views: nothing here copies or allocates on
// the per-frame path.
package frame
