package apiserver

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNoObjectTakesAnothersName: no switch, adapter or socket may claim a
// host resource that another object, the API or the host has; the error
// names the holder, and nothing is stored.
func TestNoObjectTakesAnothersName(t *testing.T) {
	e := newEnv(t)
	e.setup()
	sock := func(name string) string { return filepath.Join(e.dir, name) }
	adapter := func(name, att string) string {
		return `{"vm":"web","name":"` + name + `","switch":"int0","dynamicMAC":true,"attachment":` + att + `}`
	}
	e.ok("POST", "/v1/adapters", adapter("eth0", `{"kind":"netns","namespace":"web"}`))
	e.ok("POST", "/v1/adapters", adapter("t0", `{"kind":"tap","device":"vnet7"}`))
	e.ok("POST", "/v1/adapters", adapter("s0", `{"kind":"qemu-stream","socket":"`+sock("s0.sock")+`"}`))
	os.WriteFile(sock("file.sock"), []byte("x"), 0o600)
	l, err := net.Listen("unix", sock("live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fifo := filepath.Join(e.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body string
		want                     []string
	}{
		{"uplink is another switch's host adapter", "POST", "/v1/switches", `{"name":"ext1","type":"external","uplink":"int0"}`,
			[]string{"switches[ext1].uplink", "the host adapter of switch int0"}},
		{"TAP named like a switch", "POST", "/v1/adapters", adapter("t1", `{"kind":"tap","device":"int0"}`),
			[]string{"attachment.device", "the host adapter of switch int0 has it"}},
		{"TAP named like an uplink", "POST", "/v1/adapters", adapter("t1", `{"kind":"tap","device":"eth1"}`),
			[]string{"the uplink of switch ext0 has it"}},
		{"two adapters on one TAP", "POST", "/v1/adapters", adapter("t1", `{"kind":"tap","device":"vnet7"}`),
			[]string{"the TAP of adapter web/t0 has it"}},
		{"two adapters on one interface of a namespace", "POST", "/v1/adapters", adapter("e1", `{"kind":"netns","namespace":"/run/netns/web","device":"eth0"}`),
			[]string{"adapter web/eth0 has it"}},
		{"two stream adapters on one socket", "POST", "/v1/adapters", adapter("s1", `{"kind":"qemu-dgram","socket":"`+sock("s0.sock")+`"}`),
			[]string{"adapter web/s0 has it"}},
		{"the API socket", "POST", "/v1/adapters", adapter("s1", `{"kind":"qemu-stream","socket":"`+sock("api.sock")+`"}`),
			[]string{"the API's own socket"}},
		{"a socket outside the allowed directories", "POST", "/v1/adapters", adapter("s1", `{"kind":"qemu-stream","socket":"/etc/s1.sock"}`),
			[]string{"/etc/s1.sock", "--socket-dir"}},
		{"a socket path too long", "POST", "/v1/adapters", adapter("s1", `{"kind":"qemu-stream","socket":"`+sock(strings.Repeat("x", 110))+`"}`),
			[]string{"at most 107 bytes"}},
		{"a regular file", "POST", "/v1/adapters", adapter("s1", `{"kind":"qemu-stream","socket":"`+sock("file.sock")+`"}`),
			[]string{"not a socket"}},
		{"a socket another process serves", "POST", "/v1/adapters", adapter("s1", `{"kind":"qemu-stream","socket":"`+sock("live.sock")+`"}`),
			[]string{"in use"}},
		{"a FIFO as the namespace", "POST", "/v1/adapters", adapter("f1", `{"kind":"netns","namespace":"`+fifo+`"}`),
			[]string{"attachment.namespace", "a network namespace"}},
		{"a static MAC of the host's NIC", "POST", "/v1/adapters", strings.Replace(adapter("m1", `{"kind":"netns","namespace":"m1"}`), `"dynamicMAC":true`, `"mac":"`+nicMAC.String()+`"`, 1),
			[]string{"adapters[web/m1].mac", "NIC eth1 (uplink of switch ext0) has it"}},
	}
	for _, tt := range tests {
		start := time.Now()
		e.refused(tt.name, tt.method, tt.path, tt.body, 400, "invalid", tt.want)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", tt.name, d)
		}
	}
	if _, err := os.Stat(sock("live.sock")); err != nil {
		t.Fatal("the live socket of another process was removed")
	}
	// Default socket paths of a/b-c and a-b/c are distinct.
	e.ok("POST", "/v1/vms", `{"name":"a"}`)
	e.ok("POST", "/v1/vms", `{"name":"a-b"}`)
	r1 := e.ok("POST", "/v1/adapters", `{"vm":"a","name":"b-c","switch":"int0","dynamicMAC":true,"attachment":{"kind":"qemu-stream"}}`)
	r2 := e.ok("POST", "/v1/adapters", `{"vm":"a-b","name":"c","switch":"int0","dynamicMAC":true,"attachment":{"kind":"qemu-stream"}}`)
	if p1, p2 := r1.Adapter.SocketPath(), r2.Adapter.SocketPath(); p1 == p2 {
		t.Fatalf("a/b-c and a-b/c share the default socket %s", p1)
	}
}
