package fdio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The frame system calls go to the kernel "raw", without the runtime's
// bookkeeping for calls that may block: the descriptors are non-blocking,
// so these never sleep, and a write into a TAP that runs the receiving
// stack can take tens of microseconds. With the bookkeeping, the scheduler
// hands the thread's P to another thread after 20 µs and the two threads
// then take turns waking each other, frame after frame.

// Read is read(2) on a non-blocking descriptor.
func Read(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Write is write(2) on a non-blocking descriptor.
func Write(fd int, b []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Mmsg is recvmmsg(2) or sendmmsg(2) (trap) with MSG_DONTWAIT on a batch
// of message headers at hdrs.
func Mmsg(trap uintptr, fd uintptr, hdrs unsafe.Pointer, n int) (int, error) {
	r, _, e := unix.RawSyscall6(trap, fd, uintptr(hdrs), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
