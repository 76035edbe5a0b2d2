// Package archtest holds the repository's architecture tests: every package
// is documented, and the layering of DESIGN.md holds (the switch core does
// no I/O and knows no backend). It has no code of its own.
package archtest
