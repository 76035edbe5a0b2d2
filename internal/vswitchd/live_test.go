package vswitchd

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

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
