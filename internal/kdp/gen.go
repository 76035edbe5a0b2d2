package kdp

// The program is C, compiled with clang by bpf2go; the object and the Go
// that loads it are committed, so a plain go build needs no clang. After a
// change to bpf/kdp.c: make bpf (go generate here; needs clang and
// libbpf-dev: make bpf installs them as root and regenerates).
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type port -type fdb_key -type fdb_val -type sw kdp bpf/kdp.c
