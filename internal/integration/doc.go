// Package integration holds the end-to-end tests that run real Linux
// network stacks (namespaces on TAP ports, a "physical network" behind an
// AF_PACKET uplink, QEMU socket peers) through the real switch core. They
// need root and skip without it; CI runs them as root.
package integration
