// Package integration holds the end-to-end tests that run real Linux
// network stacks (namespaces on TAP ports, a "physical network" behind an
// AF_PACKET uplink, QEMU socket peers) through the real switch core. The
// QEMU guest tests run on both data paths (testSwitch): the core, and the
// kernel data path's eBPF program with guests on TAPs that QEMU opens and
// stations on veths. They need root and skip without it; CI runs them as
// root.
package integration
