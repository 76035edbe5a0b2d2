package apiserver

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/apitest"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/store"
)

type env struct {
	t   *testing.T
	url string
	st  *store.Store
	d   *daemon.Controller
	be  *apitest.Backend
	dir string // the API socket's directory: QEMU sockets may be there
}

// nicMAC is eth1's MAC in the test host.
var nicMAC = frame.MustParseMAC("02:aa:bb:cc:dd:01")

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "v.db"), &config.Config{Host: config.DefaultHost("test")})
	if err != nil {
		t.Fatal(err)
	}
	be := &apitest.Backend{FailOpen: map[string]bool{}}
	d := daemon.NewController(daemon.Deps{Store: st, Backend: be, Host: apitest.Host{"eth1": nicMAC, "eth2": {}}, Runner: &apitest.Runner{},
		Log: slog.New(slog.DiscardHandler), APISocket: filepath.Join(dir, "api.sock")})
	if _, err := d.Start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(d, slog.New(slog.DiscardHandler)).Handler())
	t.Cleanup(func() { srv.Close(); d.Close(); st.Close() })
	return &env{t: t, url: srv.URL, st: st, d: d, be: be, dir: dir}
}

// do sends a request and decodes the answer into out (if not nil).
func (e *env) do(method, path, body string, out any) int {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (e *env) ok(method, path, body string) api.Result {
	e.t.Helper()
	var r api.Result
	if code := e.do(method, path, body, &r); code != 200 {
		var eb api.ErrorBody
		e.do("GET", "/v1/state", "", nil)
		e.t.Fatalf("%s %s = %d %+v", method, path, code, eb)
	}
	return r
}

// refused sends a request that must fail with status and code, naming
// each of want, and checks that the stored state did not change.
func (e *env) refused(name, method, path, body string, status int, code string, want []string) {
	e.t.Helper()
	before := e.rev()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var eb api.ErrorBody
	json.Unmarshal(b, &eb)
	if resp.StatusCode != status || eb.Error.Code != code {
		e.t.Errorf("%s: %d %s, want %d %s: %s", name, resp.StatusCode, eb.Error.Code, status, code, b)
	}
	for _, w := range want {
		if !strings.Contains(string(b), w) {
			e.t.Errorf("%s: answer does not name %q: %s", name, w, b)
		}
	}
	if e.rev() != before {
		e.t.Errorf("%s: the rejected write changed the state (revision %d → %d)", name, before, e.rev())
	}
}

func (e *env) rev() uint64 {
	_, rev, err := e.st.Load()
	if err != nil {
		e.t.Fatal(err)
	}
	return rev
}

func (e *env) setup() {
	e.ok("POST", "/v1/switches", `{"name":"int0","type":"internal"}`)
	e.ok("POST", "/v1/switches", `{"name":"ext0","type":"external","uplink":"eth1"}`)
	e.ok("POST", "/v1/vms", `{"name":"web"}`)
}

func TestWritesAndReads(t *testing.T) {
	e := newEnv(t)
	e.setup()
	r := e.ok("POST", "/v1/adapters", `{"vm":"web","name":"eth0","switch":"int0","dynamicMAC":true,
		"vlan":{"mode":"access","access":10},"attachment":{"kind":"netns","namespace":"web"}}`)
	h := config.DefaultHost("test")
	if r.Adapter == nil || r.Adapter.MAC != h.MACMin || r.Revision != 5 ||
		!slices.Contains(r.Changes, "add port int0 web/eth0 netns dev=eth0 ns=web mac="+h.MACMin.String()+" guard [access 10]") {
		t.Fatalf("add adapter result %+v", r)
	}
	if again := e.ok("PUT", "/v1/vms/web/adapters/eth0", `{"vm":"web","name":"eth0","switch":"int0","dynamicMAC":true,
		"vlan":{"mode":"access","access":10},"attachment":{"kind":"netns","namespace":"web"}}`); len(again.Changes) != 0 || again.Revision != 5 {
		t.Fatalf("an unchanged PUT changed something: %+v", again)
	}
	var topo api.Topology
	e.do("GET", "/v1/topology", "", &topo)
	if len(topo.Switches) != 2 || topo.Switches[0].Name != "ext0" || topo.Switches[0].Uplink.Name != "eth1" ||
		topo.Switches[1].Adapters[0].VLAN != "access 10" || !topo.Switches[1].Running {
		t.Fatalf("topology %+v", topo)
	}
	var fdb api.FDBPage
	if code := e.do("GET", "/v1/switches/int0/fdb", "", &fdb); code != 200 || len(fdb.Entries) != 1 || !fdb.Entries[0].Static ||
		fdb.Entries[0].Port != "web/eth0" || fdb.Next != "" {
		t.Fatalf("fdb %d %+v", code, fdb)
	}
	var stats []api.PortStats
	if e.do("GET", "/v1/stats", "", &stats); len(stats) != 4 { // int0: host, web/eth0; ext0: host, uplink
		t.Fatalf("stats %+v", stats)
	}
}

// TestBadInput sends every kind of bad input the issue lists and checks
// the error code, that the problem is named, and that nothing changed.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.ok("POST", "/v1/adapters", `{"vm":"web","name":"eth0","switch":"int0","mac":"02:56:53:00:00:01","attachment":{"kind":"netns","namespace":"web"}}`)
	adapter := func(extra string) string {
		return `{"vm":"web","name":"eth1","switch":"int0","dynamicMAC":true,"attachment":{"kind":"netns","namespace":"web"}` + extra + `}`
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
		want                     []string
	}{
		{"VID 0", "POST", "/v1/adapters", adapter(`,"vlan":{"mode":"access"}`), 400, "invalid", []string{`vlan.access \"0\"`}},
		{"VID 4095", "POST", "/v1/adapters", adapter(`,"vlan":{"mode":"access","access":4095}`), 400, "invalid", []string{`\"4095\"`, "1 to 4094"}},
		{"VID 5000", "POST", "/v1/adapters", adapter(`,"vlan":{"mode":"trunk","allowed":"10","native":5000}`), 400, "invalid", []string{`vlan.native \"5000\"`}},
		{"garbage VLAN set", "POST", "/v1/adapters", adapter(`,"vlan":{"mode":"trunk","allowed":"1-100,50-"}`), 400, "invalid", []string{`1-100,50-`, "offset 9"}},
		{"hybrid overlap", "POST", "/v1/adapters", adapter(`,"vlan":{"mode":"hybrid","pvid":10,"untagged":"10,20","tagged":"20-30"}`), 400, "invalid", []string{"20 is in both sets"}},
		{"multicast MAC", "POST", "/v1/adapters", strings.Replace(adapter(""), `"dynamicMAC":true`, `"mac":"01:00:5e:00:00:01"`, 1), 400, "invalid", []string{"unicast"}},
		{"malformed MAC", "POST", "/v1/adapters", strings.Replace(adapter(""), `"dynamicMAC":true`, `"mac":"02:56:zz:00:00:01"`, 1), 400, "invalid", []string{`invalid MAC address \"02:56:zz:00:00:01\"`}},
		{"MAC in use", "POST", "/v1/adapters", strings.Replace(adapter(""), `"dynamicMAC":true`, `"mac":"02:56:53:00:00:01"`, 1), 400, "invalid", []string{"web/eth0 has it"}},
		{"pool min > max", "PUT", "/v1/host", `{"macMin":"02:00:00:00:00:09","macMax":"02:00:00:00:00:01"}`, 400, "invalid", []string{"host.macMin", "at most host.macMax"}},
		{"duplicate switch", "POST", "/v1/switches", `{"name":"int0","type":"private"}`, 400, "invalid", []string{"no other switch"}},
		{"duplicate VM", "POST", "/v1/vms", `{"name":"web"}`, 400, "invalid", []string{"no other VM"}},
		{"missing NIC", "POST", "/v1/switches", `{"name":"ext9","type":"external","uplink":"eth9"}`, 400, "invalid", []string{"switches[ext9].uplink", "existing network interface"}},
		{"NIC of another switch", "POST", "/v1/switches", `{"name":"ext1","type":"external","uplink":"eth1"}`, 400, "invalid", []string{"switch ext0 has it"}},
		{"switch with adapters", "DELETE", "/v1/switches/int0", "", 409, "in_use", []string{"web/eth0", "force"}},
		{"unknown field", "POST", "/v1/vms", `{"name":"x","colour":"red"}`, 400, "invalid", []string{`unknown field \"colour\"`}},
		{"oversized body", "POST", "/v1/vms", `{"name":"` + strings.Repeat("x", config.MaxDocument) + `"}`, 413, "too_large", nil},
		{"rename via PUT", "PUT", "/v1/switches/int0", `{"name":"int1","type":"internal"}`, 400, "invalid", []string{"cannot be renamed"}},
		{"missing switch", "DELETE", "/v1/switches/nope", "", 404, "not_found", nil},
		{"unknown route", "GET", "/v1/nothing", "", 404, "not_found", nil},
	}
	for _, tt := range tests {
		e.refused(tt.name, tt.method, tt.path, tt.body, tt.status, tt.code, tt.want)
	}
	e.ok("DELETE", "/v1/switches/int0?force=true", "")
}

// A switch the host cannot set up (its NIC vanished after the check) is
// never stored: the answer names the failed step, and neither the stored
// state nor its revision changed.
func TestSwitchCreationIsATransaction(t *testing.T) {
	e := newEnv(t)
	e.setup()
	before := e.rev()
	e.be.FailOpen["ext2/uplink"] = true
	var eb api.ErrorBody
	code := e.do("POST", "/v1/switches", `{"name":"ext2","type":"external","uplink":"eth2"}`, &eb)
	if code != 500 || eb.Error.Code != "failed" || eb.Error.Step != "open uplink" || !strings.Contains(eb.Error.Message, "nothing was") {
		t.Fatalf("answer %d %+v", code, eb)
	}
	c, rev, _ := e.st.Load()
	if rev != before || c.Switch("ext2") != nil || e.d.Switch("ext2") != nil {
		t.Fatalf("after the failed creation: revision %d (before %d), stored %v, running %v", rev, before, c.Switch("ext2") != nil, e.d.Switch("ext2") != nil)
	}
}

// Deleting an external switch whose host identity cannot go back is undone too.
func TestSwitchDeletionIsATransaction(t *testing.T) {
	e := newEnv(t)
	e.setup()
	before := e.rev()
	e.be.FailBack = true
	var eb api.ErrorBody
	code := e.do("DELETE", "/v1/switches/ext0", "", &eb)
	if code != 500 || eb.Error.Step != "move host identity back to eth1" {
		t.Fatalf("answer %d %+v", code, eb)
	}
	c, rev, _ := e.st.Load()
	if rev != before || c.Switch("ext0") == nil || e.d.Switch("ext0") == nil {
		t.Fatalf("after the failed deletion: revision %d (before %d), stored %v, running %v", rev, before, c.Switch("ext0") != nil, e.d.Switch("ext0") != nil)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+path] = true
		}
	}
	for _, r := range routeTable {
		key := r.method + " " + r.path
		if !documented[key] {
			t.Errorf("route %s is not in openapi.json", key)
		}
		delete(documented, key)
	}
	for key := range documented {
		t.Errorf("openapi.json documents %s, which is not a route", key)
	}
	e := newEnv(t)
	var served map[string]any
	if e.do("GET", "/v1/openapi.json", "", &served); served["openapi"] != "3.0.3" {
		t.Fatal("GET /v1/openapi.json does not serve the document")
	}
}

func TestListenSocketMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "vswitchd.sock")
	l, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v mode %v", err, fi.Mode())
	}
	_ = bytes.MinRead
}

func TestVMRuns(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.ok("POST", "/v1/adapters", `{"vm":"web","name":"eth0","switch":"int0","dynamicMAC":true,"attachment":{"kind":"qemu-stream"}}`)
	var eb api.ErrorBody
	if code := e.do("POST", "/v1/vms/web/start", "", &eb); code != 400 || !strings.Contains(eb.Error.Message, "no kernel, disk or network boot") {
		t.Fatalf("start without a boot source: %d %+v", code, eb)
	}
	hasPort := func() bool {
		for _, p := range e.d.Switch("int0").Ports() {
			if p.Name == "web/eth0" {
				return true
			}
		}
		return false
	}
	if !hasPort() {
		t.Fatal("an adapter of a VM started elsewhere must always be up")
	}
	e.ok("PUT", "/v1/vms/web", `{"name":"web","kernel":"/boot/vmlinux","memoryMiB":128}`)
	if hasPort() {
		t.Fatal("the adapter of a VM vswitchd runs is up while the VM is not")
	}
	var st api.VMStatus
	if code := e.do("POST", "/v1/vms/web/start", "", &st); code != 200 || st.State != "running" || st.Accel != "tcg" {
		t.Fatalf("start: %d %+v", code, st)
	}
	if !hasPort() {
		t.Fatal("the adapter did not come up with its VM")
	}
	if code := e.do("POST", "/v1/vms/web/start", "", &eb); code != 409 {
		t.Fatalf("second start: %d", code)
	}
	if e.do("GET", "/v1/vms/web/status", "", &st); st.State != "running" {
		t.Fatalf("status %+v", st)
	}
	if code := e.do("POST", "/v1/vms/web/stop", "", &st); code != 200 || st.State != "exited" {
		t.Fatalf("stop: %d %+v", code, st)
	}
	if hasPort() {
		t.Fatal("the adapter did not go with its VM")
	}
	if code := e.do("GET", "/v1/vms/ghost/status", "", &eb); code != 404 {
		t.Fatalf("status of a missing VM: %d", code)
	}
	if code := e.do("PUT", "/v1/vms/web", `{"name":"web","memoryMiB":8}`, &eb); code != 400 || !strings.Contains(eb.Error.Problems[0].Field, "memoryMiB") {
		t.Fatalf("bad memory: %d %+v", code, eb)
	}
}

// TestNICs: the interfaces an external switch could take, for the console's choice.
func TestNICs(t *testing.T) {
	e := newEnv(t)
	var nics []string
	if code := e.do("GET", "/v1/host/nics", "", &nics); code != 200 || strings.Join(nics, ",") != "eth1,eth2" {
		t.Fatalf("GET /v1/host/nics: %d %v, want eth1,eth2", code, nics)
	}
}

// TestConsoleTokenStaysHome: the peer listener never hands out the web
// console's URL (its token allows writes; the peer token reads only).
func TestConsoleTokenStaysHome(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(New(e.d, slog.New(slog.DiscardHandler)).PeerHandler())
	t.Cleanup(srv.Close)
	for _, path := range []string{"/v1/console", "/v1/console/token"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("peer listener GET %s: %d, want 403", path, resp.StatusCode)
		}
	}
}
