// Package nsrun runs code inside a Linux network namespace, safely: on a
// goroutine whose OS thread is locked, switched into the namespace and
// back, and thrown away (never returned to the Go scheduler) if switching
// back fails. Sockets and TAP devices opened there belong to that
// namespace for their whole life, whichever thread uses them later.
package nsrun

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

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
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("nsrun: open namespace %s: %w", path, err)
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
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}
