// Package nsrun runs code inside a Linux network namespace, safely: on a
// goroutine whose OS thread is locked, switched into the namespace and
// back, and thrown away (never returned to the Go scheduler) if switching
// back fails. Sockets and TAP devices opened there belong to that
// namespace for their whole life, whichever thread uses them later.
package nsrun

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Errors of opening a namespace.
var (
	// ErrNoNamespace: nothing at the path (a namespace not made yet, or gone).
	ErrNoNamespace = errors.New("no such network namespace")
	// ErrNotNamespace: the path is something else (a FIFO, a plain file),
	// refused without waiting on it.
	ErrNotNamespace = errors.New("not a namespace file")
)

// open opens a namespace file without ever blocking (a FIFO given as a
// path would otherwise hang the opener) and checks that it is one.
func open(path string) (netns.NsHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%s: %w", path, ErrNoNamespace)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", path, ErrNotNamespace)
	}
	return netns.NsHandle(fd), nil
}

// Check reports whether path (a Path result; "" is the caller's own) is
// a namespace file, without entering it.
func Check(path string) error {
	if path == "" {
		return nil
	}
	h, err := open(path)
	if err != nil {
		return err
	}
	return h.Close()
}

// Path returns the namespace file for a spec: "" is the caller's own
// namespace, a plain name is one made by `ip netns add` (/run/netns/NAME),
// a number is a process's namespace (/proc/PID/ns/net), and anything with
// a slash is taken as a path.
func Path(spec string) string {
	switch {
	case spec == "":
		return ""
	case strings.Contains(spec, "/"):
		return spec
	}
	if _, err := strconv.Atoi(spec); err == nil {
		return "/proc/" + spec + "/ns/net"
	}
	return "/run/netns/" + spec
}

// In runs fn with the calling thread in the network namespace at path
// ("" runs fn in the current namespace, on a locked thread all the same).
func In(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: if anything below fails half-way, the thread
		// dies with the goroutine instead of serving others in the wrong
		// namespace. On success it is unlocked explicitly.
		errc <- in(path, fn)
	}()
	return <-errc
}

func in(path string, fn func() error) error {
	if path == "" {
		err := fn()
		runtime.UnlockOSThread()
		return err
	}
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("nsrun: current namespace: %w", err)
	}
	defer orig.Close()
	target, err := open(path)
	if err != nil {
		return fmt.Errorf("nsrun: open namespace: %w", err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("nsrun: enter namespace %s: %w", path, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("nsrun: leave namespace %s: %w (and fn: %v)", path, err, fnErr)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Netlink returns a netlink handle that works in the namespace at path
// ("" is the caller's), without moving any thread; close it after use.
func Netlink(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle()
	}
	ns, err := open(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}
