package vswitchd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/sockfile"
)

// A second vswitchd (another store) must not take over the API socket of
// a live one: it refuses to start and leaves the socket alone.
func TestRefusesALiveAPISocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vswitchd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = Run(context.Background(), Options{Store: filepath.Join(dir, "other.db"), Socket: sock})
	if err == nil || !strings.Contains(err.Error(), "another vswitchd serves it") {
		t.Fatalf("Run = %v, want a refusal", err)
	}
	if !sockfile.Live(sock) {
		t.Fatal("the live daemon's socket was taken away")
	}
}

// A client that sends half a request, or connects and says nothing,
// cannot hold the daemon: its connection is closed once the header
// deadline passes, and the API still answers others.
func TestSlowClientsAreCutOff(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("vswitchd needs root (packet sockets, TAPs)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "vswitchd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Store: filepath.Join(dir, "v.db"), Socket: sock, Ready: ready, HeaderTimeout: 200 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, send string }{
		{"half a request", "GET /v1/state HTTP/1.1\r\nHost: x\r\n"},
		{"nothing at all", ""},
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, tc.send)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c) // returns when the daemon closes the connection
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: the daemon kept the connection open for 5 s", tc.name)
		}
	}
	if _, err := client.New(sock).State(); err != nil {
		t.Fatalf("the API after slow clients: %v", err)
	}
}
