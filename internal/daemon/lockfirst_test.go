package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/store"
)

// fakeCluster is a cluster of one host whose state lives in memory; it
// notes the calls a write makes.
type fakeCluster struct {
	mu    sync.Mutex
	state *config.Config
	rev   uint64
	calls []string
}

func (f *fakeCluster) note(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }
func (f *fakeCluster) Load() (*config.Config, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Clone(), f.rev, nil
}
func (f *fakeCluster) LoadShared() (*config.Config, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, f.rev, nil
}
func (f *fakeCluster) Replace(next *config.Config, rev uint64) (uint64, error) {
	f.note("replace")
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev != f.rev {
		return 0, store.ErrStale
	}
	f.state, f.rev = next, f.rev+1
	return f.rev, nil
}
func (f *fakeCluster) Name() string { return "h1" }
func (f *fakeCluster) VTEPs() map[string]netip.Addr {
	return map[string]netip.Addr{"h1": netip.MustParseAddr("192.0.2.1")}
}
func (f *fakeCluster) Hosts() []api.HostInfo {
	return []api.HostInfo{{Name: "h1", VTEP: "192.0.2.1", Up: true}}
}
func (f *fakeCluster) OnChange(func()) {}
func (f *fakeCluster) Refresh() error  { return nil }
func (f *fakeCluster) Token() string   { return "t" }
func (f *fakeCluster) Lock() (func(), error) {
	f.note("lock")
	return func() { f.note("unlock") }, nil
}

// TestLockFirst: in a cluster a write that adds many adapters (whose
// devices this host makes before the transaction) is made under the
// cluster's lock from the start, where a small one is first tried
// without it.
func TestLockFirst(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "v.db"), &config.Config{Host: config.DefaultHost("t")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := &config.Config{Host: config.DefaultHost("t"), Switches: []config.Switch{{Name: "p0", Type: config.Private, Host: "h1"}},
		VMs: []config.VM{{Name: "v", Host: "h1"}}}
	fc := &fakeCluster{state: cfg, rev: 1}
	c := NewController(Deps{Store: st, Backend: newFake(), Host: nicsHost{}, Runner: nopRunner{}, Cluster: fc,
		Log: slog.New(slog.DiscardHandler), RetryEvery: time.Hour})
	defer c.Close()
	add := func(from, n int) func(*config.Config) error {
		return func(c *config.Config) error {
			for i := from; i < from+n; i++ {
				if _, _, err := c.AddAdapter(config.Adapter{VM: "v", Name: fmt.Sprint("n", i), Switch: "p0", DynamicMAC: true,
					Attachment: config.Attachment{Kind: config.AttachTAP, Device: fmt.Sprint("t", i)}}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name  string
		from  int
		n     int
		calls []string
	}{
		{"one adapter: tried without the lock", 0, 1, []string{"replace"}},
		{"a batch below the bound", 1, lockFirst - 1, []string{"replace"}},
		{"a batch of the bound: under the lock from the start", 10, lockFirst, []string{"lock", "replace", "unlock"}},
	} {
		fc.calls = nil
		if _, err := c.Change(add(tc.from, tc.n)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(fc.calls, tc.calls) {
			t.Errorf("%s: calls %v; want %v", tc.name, fc.calls, tc.calls)
		}
	}
	if st, _, _ := fc.Load(); len(st.Adapters) != 1+lockFirst-1+lockFirst {
		t.Fatalf("%d adapters stored", len(st.Adapters))
	}
}
