// Package sockfile guards unix socket files: a socket file is removed only
// when it is stale (nobody listens on it), never when another process
// serves it and never when it is not a socket at all.
package sockfile

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// ErrInUse: a process listens on the socket.
var ErrInUse = errors.New("in use by a running process")

// ErrNotSocket: the path is something other than a socket.
var ErrNotSocket = errors.New("exists and is not a socket")

// Live reports whether a process accepts connections or datagrams on path.
func Live(path string) bool {
	for _, network := range []string{"unix", "unixgram"} {
		c, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// RemoveStale deletes the socket file at path if nobody serves it; a
// missing file is not an error.
func RemoveStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s %w", path, ErrNotSocket)
	}
	if Live(path) {
		return fmt.Errorf("socket %s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
