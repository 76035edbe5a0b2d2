// Package e2e holds the end-to-end tests of the product: they build
// vswitchd and vswitchctl, run the daemon in a namespace of their own and
// drive it only through vswitchctl, as an administrator would. They need
// root and skip without it; CI runs them as root.
package e2e
