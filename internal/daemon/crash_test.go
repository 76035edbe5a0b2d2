package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/store"
)

type nopRunner struct{}

func (nopRunner) Start(vm config.VM, _ []config.Adapter) (api.VMStatus, error) {
	return api.VMStatus{}, errors.New("no VMs here")
}
func (nopRunner) Stop(string, time.Duration) (api.VMStatus, error) { return api.VMStatus{}, nil }
func (nopRunner) Status(string) api.VMStatus                       { return api.VMStatus{} }
func (nopRunner) Console(string) string                            { return "" }
func (nopRunner) OnExit(func(string))                              {}
func (nopRunner) Adopt(string, string) (api.VMStatus, bool)        { return api.VMStatus{}, false }
func (nopRunner) Leftovers() []string                              { return nil }

type nicsHost map[string]bool

func (h nicsHost) CheckNIC(name string) error {
	if !h[name] {
		return errors.New("no such device")
	}
	return nil
}
func (h nicsHost) MAC(string) (frame.MAC, error) { return frame.MAC{}, errors.New("no MACs here") }
func (h nicsHost) NICs() ([]string, error)       { return slices.Sorted(maps.Keys(h)), nil }

func newController(t *testing.T, st *store.Store, fb *fakeBackend) *Controller {
	c := NewController(Deps{Store: st, Backend: fb, Host: nicsHost{"eth1": true}, Runner: nopRunner{},
		Log: slog.New(slog.DiscardHandler), RetryEvery: time.Hour})
	return c
}

// startedController is a started controller on a new store over fb that
// retries every 20 ms, with the given host step deadline (0: the default).
func startedController(t *testing.T, fb *fakeBackend, hostTimeout time.Duration) *Controller {
	st, err := store.Open(filepath.Join(t.TempDir(), "v.db"), &config.Config{Host: config.DefaultHost("t")})
	if err != nil {
		t.Fatal(err)
	}
	c := NewController(Deps{Store: st, Backend: fb, Host: nicsHost{}, Runner: nopRunner{}, Log: slog.New(slog.DiscardHandler),
		RetryEvery: 20 * time.Millisecond, HostTimeout: hostTimeout})
	c.Start()
	t.Cleanup(func() { c.Close(); st.Close() })
	return c
}

// persistent renders what outlives a crashed daemon: TAPs, socket files
// and a NIC's identity (an uplink's packet socket dies with the process).
func (f *fakeBackend) persistent() string {
	var keep []string
	for _, l := range strings.Split(f.String(), "\n") {
		if l != "" && !strings.Contains(l, " uplink dev=") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// crash drops what a killed process loses: its open uplink sockets.
func (f *fakeBackend) crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.devices {
		if s.Kind == KindUplink {
			delete(f.devices, k)
		}
	}
}

// crashCase is a change from a state: the crash tests cut it at every host step.
type crashCase struct {
	name   string
	before func(c *config.Config) error
	change func(c *config.Config) error
}

func vmWith(n int) func(c *config.Config) error {
	return func(c *config.Config) error {
		c.AddSwitch(config.Switch{Name: "int0", Type: config.Internal})
		c.AddVM(config.VM{Name: "big"})
		for i := range n {
			kind := config.AttachNetns
			if i%2 == 1 {
				kind = config.AttachQEMUStream
			}
			a := config.Adapter{VM: "big", Name: fmt.Sprintf("n%d", i), Switch: "int0", DynamicMAC: true,
				Attachment: config.Attachment{Kind: kind}}
			if kind == config.AttachNetns {
				a.Attachment.Namespace = fmt.Sprintf("ns%d", i)
			}
			if _, _, err := c.AddAdapter(a); err != nil {
				return err
			}
		}
		return nil
	}
}

var crashCases = []crashCase{
	{"external switch create", func(*config.Config) error { return nil }, func(c *config.Config) error {
		c.AddSwitch(config.Switch{Name: "ext0", Type: config.External, Uplink: "eth1"})
		return nil
	}},
	{"external switch delete", func(c *config.Config) error {
		c.AddSwitch(config.Switch{Name: "ext0", Type: config.External, Uplink: "eth1"})
		return nil
	}, func(c *config.Config) error { return c.RemoveSwitch("ext0", false) }},
	{"adapter add", vmWith(1), func(c *config.Config) error {
		_, _, err := c.AddAdapter(config.Adapter{VM: "big", Name: "new", Switch: "int0", DynamicMAC: true,
			Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "newns"}})
		return err
	}},
	{"adapter remove", vmWith(2), func(c *config.Config) error { return c.RemoveAdapter("big", "n0") }},
	{"VM removal with 7 adapters", vmWith(7), func(c *config.Config) error { return c.RemoveVM("big", true) }},
	{"switch type change internal to external", vmWith(1), func(c *config.Config) error {
		s := *c.Switch("int0")
		s.Type, s.Uplink = config.External, "eth1"
		return c.SetSwitch(s)
	}},
}

// cleanHost is what the host looks like after a clean start on c.
func cleanHost(t *testing.T, c *config.Config) string {
	st, err := store.Open(filepath.Join(t.TempDir(), "ref.db"), c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fb := newFake()
	ctl := newController(t, st, fb)
	if _, err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	ctl.Close()
	fb.crash()
	return fb.persistent()
}

// TestCrashAtEveryStep cuts each change at every host step it takes (a
// panic, the daemon dropped as a kill would drop it), starts a new daemon
// on the same store and host, and checks that the host is exactly what
// the stored state asks for, and that the stored state is the one before
// the change or the one after it.
func TestCrashAtEveryStep(t *testing.T) {
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			for k := 1; ; k++ {
				st, err := store.Open(filepath.Join(t.TempDir(), "v.db"), &config.Config{Host: config.DefaultHost("t")})
				if err != nil {
					t.Fatal(err)
				}
				fb := newFake()
				ctl := newController(t, st, fb)
				ctl.Start()
				if _, err := ctl.Change(tc.before); err != nil {
					t.Fatal(err)
				}
				prev, _, _ := st.Load()
				fb.mu.Lock()
				fb.crashAt = fb.steps + k
				fb.mu.Unlock()
				crashed := func() (crashed bool) {
					defer func() {
						if r := recover(); r != nil {
							if r != errCrash {
								panic(r)
							}
							crashed = true
						}
					}()
					if _, err := ctl.Change(tc.change); err != nil {
						t.Fatalf("step %d: the change failed: %v", k, err)
					}
					return false
				}()
				ctl.Close()
				fb.crash()
				fb.crashAt = 0
				if !crashed {
					if k == 1 {
						t.Fatal("the change took no host step")
					}
					st.Close()
					t.Logf("%d host steps, each cut once", k-1)
					return
				}
				ctl = newController(t, st, fb)
				if _, err := ctl.Start(); err != nil {
					t.Fatalf("crash before step %d: restart: %v", k, err)
				}
				stored, _, _ := st.Load()
				want := prev.Clone()
				tc.change(want)
				if jsonOf(stored) != jsonOf(prev) && jsonOf(stored) != jsonOf(want) {
					t.Fatalf("crash before step %d: the stored state is neither the one before nor the one after the change:\n%s", k, jsonOf(stored))
				}
				ctl.Close()
				fb.crash()
				if got, exp := fb.persistent(), cleanHost(t, stored); got != exp {
					t.Fatalf("crash before step %d: after the restart the host has\n%s\nwant (as the stored state asks)\n%s", k, got, exp)
				}
				st.Close()
			}
		})
	}
}

// An adapter whose namespace does not exist yet is stored with a warning
// and comes up on the retry timer, without another write.
func TestWaitingPortComesUpOnItsOwn(t *testing.T) {
	fb := newFake()
	fb.notYet = map[string]bool{"web/eth0": true}
	c := startedController(t, fb, 0)
	out, err := c.Change(func(cfg *config.Config) error { withInternal(cfg); return nil })
	if err != nil || len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "not there yet") {
		t.Fatalf("Change = %+v, %v; want it stored with one warning", out, err)
	}
	if ps := portState(t, c, "web/eth0"); ps.State != api.PortWaiting || !strings.Contains(ps.Reason, "not there yet") {
		t.Fatalf("port state = %+v, want waiting", ps)
	}
	fb.mu.Lock()
	fb.notYet = nil
	fb.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); portState(t, c, "web/eth0").State != api.PortUp; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the port did not come up once its namespace was there")
		}
	}
	if !strings.Contains(fb.String(), "int0/web/eth0 netns") {
		t.Fatalf("devices:\n%s", fb)
	}
}

// portState returns the state of one port, as GET /v1/ports shows it.
func portState(t *testing.T, c *Controller, port string) api.PortState {
	t.Helper()
	cfg, _, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range c.PortStates(cfg) {
		if ps.Port == port {
			return ps
		}
	}
	t.Fatalf("no port %s in %+v", port, c.PortStates(cfg))
	return api.PortState{}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A host step that hangs neither stalls reads nor stores the write that
// needed it: the write is refused once the step's deadline passes, and
// what the step made when it finally returns is removed.
func TestHungHostStep(t *testing.T) {
	fb := newFake()
	c := startedController(t, fb, 300*time.Millisecond)
	if _, err := c.Change(func(cfg *config.Config) error { withInternal(cfg); return nil }); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	fb.mu.Lock()
	fb.hang, fb.hung = map[string]chan struct{}{"web/eth1": release}, make(chan string, 1)
	fb.mu.Unlock()
	type result struct {
		out Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.Change(func(cfg *config.Config) error {
			cfg.Adapters = append(cfg.Adapters, config.Adapter{VM: "web", Name: "eth1", Switch: "int0", MAC: macB,
				Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "webns", Device: "eth1"}})
			return nil
		})
		done <- result{out, err}
	}()
	<-fb.hung
	// While the write waits on the host: the MAC table, counters, state
	// and port states are all readable.
	if sw := c.Switch("int0"); sw == nil || len(sw.Ports()) != 2 {
		t.Fatalf("switch int0 while a write hangs: %v", sw)
	}
	if _, _, err := c.State(); err != nil {
		t.Fatal(err)
	}
	if ps := portState(t, c, "web/eth0"); ps.State != api.PortUp {
		t.Fatalf("web/eth0 while a write hangs: %+v", ps)
	}
	select {
	case r := <-done:
		t.Fatalf("the write returned before its host step did (%+v, %v): the reads above did not run during it", r.out, r.err)
	default:
	}
	r := <-done
	var refused *RefusedError
	if !errors.As(r.err, &refused) || !errors.Is(r.err, ErrTimeout) {
		t.Fatalf("Change = %+v, %v; want refused, timed out", r.out, r.err)
	}
	cfg, _, _ := c.State()
	if cfg.Adapter("web", "eth1") != nil {
		t.Fatal("the refused adapter was stored")
	}
	close(release)
	removed := func() bool {
		fb.mu.Lock()
		defer fb.mu.Unlock()
		return slices.Contains(fb.removed, "int0/web/eth1")
	}
	for deadline := time.Now().Add(5 * time.Second); !removed() || strings.Contains(fb.String(), "web/eth1"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("what the late step made stayed:\n%s", fb)
		}
	}
	if _, err := c.Change(func(cfg *config.Config) error {
		cfg.Adapters = append(cfg.Adapters, config.Adapter{VM: "web", Name: "eth1", Switch: "int0", MAC: macB,
			Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "webns", Device: "eth1"}})
		return nil
	}); err != nil {
		t.Fatalf("the same write once the host answers: %v", err)
	}
}
