package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/apiserver"
	"github.com/vswitch/vswitch/internal/apitest"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/store"
)

// serve runs an API server on a unix socket and returns the socket path.
func serve(t *testing.T) string { return serveWith(t, &apitest.Backend{}) }

// serveWith is serve with the given host double.
func serveWith(t *testing.T, b *apitest.Backend) string {
	sock, _ := serveCtl(t, b)
	return sock
}

// serveCtl is serveWith that also returns the daemon's controller.
func serveCtl(t *testing.T, b *apitest.Backend) (string, *daemon.Controller) {
	return serveKernel(t, b, nil)
}

// serveKernel is serveCtl with a kernel data path (none if k is nil).
func serveKernel(t *testing.T, b *apitest.Backend, k *apitest.Kernel) (string, *daemon.Controller) {
	dir := t.TempDir()
	h := config.DefaultHost("cli-test")
	h.MACMin[3], h.MACMax[3] = 0x42, 0x42
	st, err := store.Open(filepath.Join(dir, "v.db"), &config.Config{Host: h})
	if err != nil {
		t.Fatal(err)
	}
	var ctl *daemon.Controller
	if k != nil {
		ctl = apitest.ControllerWithKernel(st, b, apitest.Host{"eth1": {}}, &apitest.Runner{}, k)
	} else {
		ctl = apitest.Controller(st, b, apitest.Host{"eth1": {}}, &apitest.Runner{})
	}
	ctl.Start()
	sock := filepath.Join(dir, "vswitchd.sock")
	l, err := apiserver.Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: apiserver.New(ctl, slog.New(slog.DiscardHandler)).Handler()}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close(); ctl.Close(); st.Close() })
	return sock, ctl
}

// run is vswitchctl with args against sock.
func run(sock string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(append([]string{"--socket", sock}, args...), &o, &e)
	return code, o.String(), e.String()
}

func mustRun(t *testing.T, sock string, args ...string) string {
	t.Helper()
	code, out, errOut := run(sock, args...)
	if code != 0 {
		t.Fatalf("vswitchctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestHyperVStyleSession(t *testing.T) {
	sock := serve(t)
	mustRun(t, sock, "switch", "add", "ext0", "--type", "external", "--uplink", "eth1")
	mustRun(t, sock, "switch", "add", "int0", "--type", "internal", "--default-vlan", "5")
	mustRun(t, sock, "switch", "add", "priv0", "--type", "private")
	mustRun(t, sock, "vm", "add", "web")
	if out := mustRun(t, sock, "adapter", "add", "web/eth0", "--switch", "ext0", "--netns", "webns"); !strings.Contains(out, "adapter web/eth0 MAC 02:56:53:42:00:00") {
		t.Fatalf("dynamic MAC not shown: %s", out)
	}
	mustRun(t, sock, "adapter", "add", "web/eth1", "--switch", "priv0", "--qemu-stream", "--mac", "52:54:00:12:34:56", "--type", "legacy")
	if out := mustRun(t, sock, "adapter", "vlan", "web/eth0", "--trunk", "10-20", "--native", "1"); !strings.Contains(out, "set port ext0 web/eth0") {
		t.Fatalf("vlan output: %s", out)
	}
	mustRun(t, sock, "adapter", "vlan", "web/eth1", "--hybrid", "--pvid", "10", "--untagged", "10,20", "--tagged", "30-40")
	mustRun(t, sock, "adapter", "vlan", "--host", "ext0", "--access", "10")
	mustRun(t, sock, "adapter", "vlan", "--uplink", "ext0", "--trunk", "1-100", "--native", "1")
	if out := mustRun(t, sock, "adapter", "vlan", "web/eth1", "--hybrid", "--pvid", "10", "--untagged", "10,20", "--tagged", "30-40"); out != "no change\n" {
		t.Fatalf("repeating a setting: %q", out)
	}
	want := `ext0 (external, default VLAN 1)
├── uplink eth1  [trunk 1-100 native 1]
├── host adapter ext0  [access 10]
└── web/eth0  02:56:53:42:00:00  synthetic  netns webns  [trunk 10-20 native 1]
int0 (internal, default VLAN 5)
└── host adapter int0  [untagged]
priv0 (private, default VLAN 1)
└── web/eth1  52:54:00:12:34:56  legacy  qemu-stream  [hybrid pvid 10 untagged 10,20 tagged 30-40]
`
	if got := mustRun(t, sock, "topology"); got != want {
		t.Fatalf("topology\n%s\nwant\n%s", got, want)
	}
	ls := mustRun(t, sock, "switch", "ls")
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(ls), "\n") {
		rows = append(rows, strings.Join(strings.Fields(line), " "))
	}
	if strings.Join(rows, "\n") != "NAME TYPE UPLINK HOST ADAPTER DEFAULT VLAN ADAPTERS DATAPATH\next0 external eth1 yes 1 1 userspace (auto)\nint0 internal - yes 5 0 userspace (auto)\npriv0 private - no 1 1 userspace (auto)" {
		t.Fatalf("switch ls:\n%s", ls)
	}
	var ads []config.Adapter
	if err := json.Unmarshal([]byte(mustRun(t, sock, "-o", "json", "adapter", "ls")), &ads); err != nil || len(ads) != 2 {
		t.Fatalf("adapter ls -o json: %v %+v", err, ads)
	}
	if out := mustRun(t, sock, "adapter", "ls"); !strings.Contains(out, "STATE") || strings.Count(out, "  up\n") != 2 {
		t.Fatalf("adapter ls, both up:\n%s", out)
	}
	mustRun(t, sock, "adapter", "vlan", "web/eth0", "--untagged")
	mustRun(t, sock, "host", "set", "--mac-min", "02:56:53:42:00:00", "--mac-max", "02:56:53:42:00:0f")
	if out := mustRun(t, sock, "host", "show"); !strings.Contains(out, "(1 of 16 in use)") {
		t.Fatalf("host show: %s", out)
	}
	if out := mustRun(t, sock, "fdb", "ext0"); !strings.Contains(out, "any   02:56:53:42:00:00  web/eth0  static") {
		t.Fatalf("fdb:\n%s", out)
	}
	if out := mustRun(t, sock, "stats", "ext0"); !strings.Contains(out, "ext0    uplink") {
		t.Fatalf("stats:\n%s", out)
	}
	code, out, errOut := run(sock, "adapter", "qemu-args", "web/eth1")
	if code != 0 || out != "-netdev stream,id=vs-eth1,server=off,addr.type=unix,addr.path=/run/vswitch/web+eth1.sock -device tulip,netdev=vs-eth1,mac=52:54:00:12:34:56,romfile=\n" ||
		!strings.Contains(errOut, "does not reconnect") {
		t.Fatalf("qemu-args: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := run(sock, "adapter", "qemu-args", "web/eth0"); code != ExitUsage || !strings.Contains(errOut, "network namespace") {
		t.Fatalf("qemu-args of a netns adapter: %d %q", code, errOut)
	}
	mustRun(t, sock, "switch", "set", "int0", "--type", "private")
	if out := mustRun(t, sock, "switch", "show", "int0"); !strings.Contains(out, "type:               private") {
		t.Fatalf("switch show after a type change:\n%s", out)
	}
}

// An adapter whose namespace is not made yet is stored with a warning,
// shown as waiting (with why) in adapter ls, and up once it is there.
func TestWaitingAdapterShown(t *testing.T) {
	b := &apitest.Backend{NotYet: map[string]bool{"later": true}}
	sock := serveWith(t, b)
	mustRun(t, sock, "switch", "add", "int0", "--type", "internal")
	mustRun(t, sock, "vm", "add", "web")
	if code, out, errOut := run(sock, "adapter", "add", "web/eth0", "--switch", "int0", "--netns", "later"); code != 0 || !strings.Contains(out+errOut, "not up yet") {
		t.Fatalf("adapter add in a namespace not made yet: exit %d\n%s%s", code, out, errOut)
	}
	out := mustRun(t, sock, "adapter", "ls")
	if !strings.Contains(out, "netns later  waiting") || !strings.Contains(out, "web/eth0 waiting: ") || !strings.Contains(out, "not there yet") {
		t.Fatalf("adapter ls:\n%s", out)
	}
	b.SetNotYet(nil)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(mustRun(t, sock, "adapter", "ls"), "netns later  up"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the adapter did not come up once its namespace was there:\n%s", mustRun(t, sock, "adapter", "ls"))
		}
	}
}

// A switch on the kernel data path: refused where there is none, with
// the reason; where there is, shown as such in switch ls, show and the
// topology, and a QEMU socket adapter on it is served by the joined core.
// A switch added without --datapath is auto: on the kernel data path
// where the host has it, else on the core with a warning saying why.
func TestKernelDatapath(t *testing.T) {
	sock := serve(t)
	code, _, errOut := run(sock, "switch", "add", "k0", "--type", "private", "--datapath", "kernel")
	if code != ExitFailed || !strings.Contains(errOut, "switches[k0].datapath") || !strings.Contains(errOut, "not available here") {
		t.Fatalf("kernel switch without a kernel data path: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := run(sock, "switch", "add", "a0", "--type", "private"); code != 0 ||
		!strings.Contains(errOut, "switch a0 runs on the userspace core here: the kernel data path is not available") {
		t.Fatalf("auto switch without a kernel data path: exit %d\n%s", code, errOut)
	}
	if out := mustRun(t, sock, "switch", "show", "a0"); !strings.Contains(out, "userspace (auto)") {
		t.Fatalf("switch show of an auto switch on the core:\n%s", out)
	}

	sock, _ = serveKernel(t, &apitest.Backend{}, &apitest.Kernel{})
	if code, out, errOut := run(sock, "switch", "add", "a0", "--type", "private"); code != 0 || strings.Contains(out+errOut, "userspace") {
		t.Fatalf("auto switch with a kernel data path: exit %d\n%s%s", code, out, errOut)
	}
	if out := mustRun(t, sock, "switch", "ls"); !strings.Contains(out, "kernel (auto)") {
		t.Fatalf("switch ls of an auto switch with a kernel data path:\n%s", out)
	}
	mustRun(t, sock, "switch", "add", "k0", "--type", "internal", "--datapath", "kernel")
	mustRun(t, sock, "vm", "add", "web")
	mustRun(t, sock, "adapter", "add", "web/eth0", "--switch", "k0", "--netns", "web")
	if out := mustRun(t, sock, "switch", "ls"); !strings.Contains(out, "kernel") {
		t.Fatalf("switch ls:\n%s", out)
	}
	if out := mustRun(t, sock, "topology"); !strings.Contains(out, "k0 (internal, default VLAN 1, kernel data path)") {
		t.Fatalf("topology:\n%s", out)
	}
	if out := mustRun(t, sock, "adapter", "ls"); !strings.Contains(out, "netns web   up") {
		t.Fatalf("adapter ls:\n%s", out)
	}
	if out := mustRun(t, sock, "fdb", "k0"); !strings.Contains(out, "web/eth0  static") {
		t.Fatalf("fdb of a kernel switch:\n%s", out)
	}
	if out := mustRun(t, sock, "stats", "k0"); !strings.Contains(out, "web/eth0") {
		t.Fatalf("stats of a kernel switch:\n%s", out)
	}
	// A QEMU socket on a kernel switch: the core serves it, joined to the program.
	mustRun(t, sock, "adapter", "add", "web/eth1", "--switch", "k0", "--qemu-dgram")
	if out := mustRun(t, sock, "stats", "k0"); !strings.Contains(out, "web/eth1") || strings.Contains(out, "join") {
		t.Fatalf("stats of a kernel switch with a QEMU socket:\n%s", out)
	}
}

// TestExitCodes checks that bad input is named and the exit code is one a
// script can trust.
func TestExitCodes(t *testing.T) {
	sock := serve(t)
	mustRun(t, sock, "switch", "add", "int0", "--type", "internal")
	mustRun(t, sock, "vm", "add", "web")
	mustRun(t, sock, "adapter", "add", "web/eth0", "--switch", "int0", "--netns", "webns")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"adapter", "vlan", "web/eth0", "--trunk", "1-100,50-"}, ExitUsage, `invalid VLAN "1-100,50-" at offset 9`},
		{[]string{"adapter", "vlan", "web/eth0", "--access", "5000"}, ExitUsage, `"5000"`},
		{[]string{"adapter", "vlan", "web/eth0", "--access", "0"}, ExitUsage, "1 to 4094"},
		{[]string{"adapter", "vlan", "web/eth0", "--hybrid", "--pvid", "10", "--untagged", "10,20", "--tagged", "20-30"}, ExitFailed, "20 is in both sets"},
		{[]string{"adapter", "vlan", "web/eth0", "--access", "10", "--trunk", "20"}, ExitUsage, "exactly one mode"},
		{[]string{"adapter", "add", "web/eth1", "--switch", "int0", "--netns", "x", "--mac", "01:00:5e:00:00:01"}, ExitFailed, "unicast"},
		{[]string{"adapter", "add", "web/eth1", "--switch", "int0", "--netns", "x", "--mac", "zz"}, ExitUsage, `invalid MAC address "zz"`},
		{[]string{"adapter", "add", "web/eth1", "--switch", "nope", "--netns", "x"}, ExitFailed, `adapters[web/eth1].switch "nope"`},
		{[]string{"adapter", "add", "web/eth1", "--switch", "int0", "--netns", "x", "--qemu-stream"}, ExitUsage, "at most one of --netns"},
		{[]string{"adapter", "add", "eth1", "--switch", "int0", "--netns", "x"}, ExitUsage, "want VM/NAME"},
		{[]string{"switch", "add", "ext0", "--type", "external", "--uplink", "eth9"}, ExitFailed, "existing network interface"},
		{[]string{"switch", "add", "int0", "--type", "internal"}, ExitFailed, "no other switch"},
		{[]string{"switch", "add", "x"}, ExitUsage, "--type is required"},
		{[]string{"switch", "rm", "int0"}, ExitFailed, "web/eth0"},
		{[]string{"switch", "rm", "ghost"}, ExitNotFound, "not found"},
		{[]string{"host", "set", "--mac-min", "02:00:00:00:00:09", "--mac-max", "02:00:00:00:00:01"}, ExitFailed, "at most host.macMax"},
		{[]string{"switch", "frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{[]string{"switch", "add", "y", "--type", "private", "--colour", "red"}, ExitUsage, "unknown flag: --colour"},
		{[]string{"-o", "yaml", "switch", "ls"}, ExitUsage, "want table or json"},
		{[]string{"adapter", "vlan", "web/eth0", "--untagged", "10"}, ExitUsage, "--untagged takes no VLAN"},
		{[]string{"adapter", "vlan", "web/eth0", "--hybrid", "--pvid", "10", "--untagged", "10"}, ExitUsage, "--hybrid needs --pvid VID, --untagged SET and --tagged SET"},
		{[]string{"adapter", "vlan", "web/eth0", "--access", "10", "--tagged", "20"}, ExitUsage, "--tagged goes with --hybrid"},
		{[]string{"console"}, ExitNotFound, "the web console is off: start vswitchd with --web"},
		{[]string{"fdb", "int0", "--vlan", "5000"}, ExitFailed, "error: invalid request:\n  vlan \"5000\""}, // a read: not "nothing was changed"
		{[]string{"console", "--rotate"}, ExitNotFound, "the web console is off"},
		{[]string{"adapter", "set", "web/eth0", "--mac-limit", "-1"}, ExitFailed, `adapters[web/eth0].macLimit "-1": 0 (no limit of its own) to 16777216 learned addresses`},
		{[]string{"adapter", "set", "web/eth0", "--mac-limit", "many"}, ExitUsage, `invalid argument "many" for "--mac-limit"`},
	}
	for _, tt := range tests {
		code, out, errOut := run(sock, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("vswitchctl %s: exit %d, stderr %q (stdout %q); want exit %d naming %q", strings.Join(tt.args, " "), code, errOut, out, tt.code, tt.want)
		}
	}
	// A refused write names each problem once.
	if _, _, errOut := run(sock, "switch", "add", "ext0", "--type", "external", "--uplink", "eth9"); strings.Count(errOut, "existing network interface") != 1 {
		t.Errorf("a validation error printed other than once:\n%s", errOut)
	}
	if code, _, errOut := run(filepath.Join(t.TempDir(), "none.sock"), "switch", "ls"); code != ExitUnreachable || !strings.Contains(errOut, "is vswitchd running?") {
		t.Errorf("no daemon: exit %d %q", code, errOut)
	}
	// A MAC limit is kept, and the next edit keeps it.
	mustRun(t, sock, "adapter", "set", "web/eth0", "--mac-limit", "8", "--spoof-guard=false")
	mustRun(t, sock, "adapter", "set", "web/eth0", "--type", "legacy")
	if js := mustRun(t, sock, "-o", "json", "adapter", "ls"); !strings.Contains(js, `"macLimit": 8`) {
		t.Fatalf("MAC limit not stored:\n%s", js)
	}
	// adapter import adds an array in one write: all of them, with MACs
	// of their own, or none when one is refused (naming it).
	file := filepath.Join(t.TempDir(), "adapters.json")
	batch := func(vlan string) {
		os.WriteFile(file, []byte(`[{"vm":"web","name":"b0","switch":"int0","dynamicMAC":true,"attachment":{"kind":"tap","device":"vsb0"}},
			{"vm":"web","name":"b1","switch":"int0","dynamicMAC":true,"vlan":`+vlan+`,"attachment":{"kind":"tap","device":"vsb1"}}]`), 0o600)
	}
	batch(`{"mode":"access","access":5000}`)
	if code, _, errOut := run(sock, "adapter", "import", file); code != ExitFailed || !strings.Contains(errOut, "adapters[web/b1].vlan.access") {
		t.Fatalf("a batch with a bad VLAN: exit %d %q", code, errOut)
	}
	if ls := mustRun(t, sock, "adapter", "ls"); strings.Contains(ls, "web/b0") {
		t.Fatalf("a refused batch left an adapter:\n%s", ls)
	}
	batch(`{"mode":"access","access":50}`)
	out := mustRun(t, sock, "adapter", "import", file)
	if macs := regexp.MustCompile(`adapter web/b[01] MAC (\S+)`).FindAllStringSubmatch(out, -1); len(macs) != 2 || macs[0][1] == macs[1][1] {
		t.Fatalf("a batch of two: %s", out)
	}
	if code, _, errOut := run(sock, "adapter", "import", file); code != ExitFailed || !strings.Contains(errOut, `adapters[web/b0].name "b0"`) {
		t.Fatalf("the same batch again: exit %d %q", code, errOut)
	}
	os.WriteFile(file, []byte("[]"), 0o600)
	if code, _, errOut := run(sock, "adapter", "import", file); code != ExitFailed || !strings.Contains(errOut, `adapters "[]": at least one adapter`) {
		t.Fatalf("an empty batch: exit %d %q", code, errOut)
	}
	if code, _, errOut := run(sock, "adapter", "import", filepath.Join(t.TempDir(), "none.json")); code != ExitUsage || !strings.Contains(errOut, "no such file") {
		t.Fatalf("a missing file: exit %d %q", code, errOut)
	}
	// With no attachment flag, an adapter gets a TAP of its own.
	mustRun(t, sock, "adapter", "add", "web/eth2", "--switch", "int0")
	if ls := mustRun(t, sock, "adapter", "ls"); !strings.Contains(ls, "tap vst"+fmt.Sprintf("%x", sha256.Sum256([]byte("web/eth2")))[:8]) {
		t.Fatalf("default attachment:\n%s", ls)
	}
	if out := mustRun(t, sock, "switch", "rm", "int0", "--force"); !strings.Contains(out, "remove switch int0") {
		t.Fatalf("forced removal: %s", out)
	}
}
