package sockfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dg := filepath.Join(dir, "dgram.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dg, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	for _, tt := range []struct {
		path    string
		want    error
		remains bool
	}{
		{live, ErrInUse, true},
		{dg, ErrInUse, true},
		{file, ErrNotSocket, true},
		{stale, nil, false},
		{filepath.Join(dir, "missing"), nil, false},
	} {
		err := RemoveStale(tt.path)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("RemoveStale(%s) = %v, want %v", filepath.Base(tt.path), err, tt.want)
		}
		if _, serr := os.Lstat(tt.path); (serr == nil) != tt.remains {
			t.Errorf("%s: still there = %v, want %v", filepath.Base(tt.path), serr == nil, tt.remains)
		}
	}
}
