package store

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/field"
)

func initial() *config.Config {
	return &config.Config{Host: config.DefaultHost("test-machine")}
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, initial())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addSwitch(name string) func(*config.Config) error {
	return func(c *config.Config) error {
		c.AddSwitch(config.Switch{Name: name, Type: config.Private})
		return nil
	}
}

func TestPersistsWithRevisions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vswitch.db")
	s := open(t, path)
	if c, rev, err := s.Load(); err != nil || rev != 1 || c.Host != initial().Host {
		t.Fatalf("new store: %+v rev %d %v", c, rev, err)
	}
	for i, name := range []string{"a", "b"} {
		rev, changed, err := s.Update(addSwitch(name))
		if err != nil || !changed || rev != uint64(i+2) {
			t.Fatalf("Update %s = %d, %v, %v", name, rev, changed, err)
		}
	}
	if rev, changed, err := s.Update(func(*config.Config) error { return nil }); err != nil || changed || rev != 3 {
		t.Fatalf("no-op Update = %d, %v, %v", rev, changed, err)
	}
	s.Close()
	s = open(t, path) // initial is ignored for an existing store
	defer s.Close()
	c, rev, err := s.Load()
	if err != nil || rev != 3 || len(c.Switches) != 2 || c.Switches[1].Name != "b" {
		t.Fatalf("after reopening: %+v rev %d %v", c.Switches, rev, err)
	}
}

func TestFailedUpdatesChangeNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "v.db"))
	defer s.Close()
	s.Update(addSwitch("keep"))
	before, rev, _ := s.Load()

	boom := errors.New("boom")
	if _, _, err := s.Update(func(c *config.Config) error {
		c.Switches = nil
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("edit error: %v", err)
	}
	_, _, err := s.Update(func(c *config.Config) error {
		c.AddSwitch(config.Switch{Name: "bad name!", Type: config.Private})
		return nil
	})
	if !errors.Is(err, field.ErrInvalid) || !strings.Contains(err.Error(), `switches[1].name "bad name!"`) {
		t.Fatalf("invalid result: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the edit's panic did not reach the caller")
			}
		}()
		s.Update(func(c *config.Config) error {
			c.Switches = nil
			panic("edit bug")
		})
	}()
	after, rev2, err := s.Load()
	if err != nil || rev2 != rev || len(after.Switches) != len(before.Switches) || after.Switches[0].Name != "keep" {
		t.Fatalf("state after failed updates: %+v rev %d→%d %v", after.Switches, rev, rev2, err)
	}
	if _, changed, err := s.Update(addSwitch("still-works")); err != nil || !changed {
		t.Fatalf("store unusable after a panic: %v", err)
	}
}

func TestLockedByAnotherOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	s := open(t, path)
	defer s.Close()
	if _, err := Open(path, initial()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestCorruptContentsReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	s := open(t, path)
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put(keyState, []byte(`{"host":{"macMin":"02:00:00:00:00:09","macMax":"02:00:00:00:00:01"},"switches":[],"vms":[],"adapters":[],"extra":1}`))
	})
	db.Close()
	s = open(t, path)
	defer s.Close()
	if _, _, err := s.Load(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `unknown field "extra"`) {
		t.Fatalf("Load of a corrupt state = %v", err)
	}
	if _, _, err := s.Update(addSwitch("x")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Update over a corrupt state = %v", err)
	}
}

func TestInitialMustValidate(t *testing.T) {
	bad := initial()
	bad.Host.MACMin, bad.Host.MACMax = bad.Host.MACMax, bad.Host.MACMin
	if _, err := Open(filepath.Join(t.TempDir(), "v.db"), bad); !errors.Is(err, field.ErrInvalid) {
		t.Fatalf("Open with an invalid initial state = %v", err)
	}
}

// The store keeps the last state decoded; what it hands out, and what an
// edit keeps hold of, are copies: changing them changes nothing stored.
func TestCachedStateIsNotShared(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "v.db"))
	defer s.Close()
	var kept *config.Config
	if _, _, err := s.Update(func(c *config.Config) error {
		kept = c
		c.AddSwitch(config.Switch{Name: "a", Type: config.Private})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	kept.Switches[0].Name = "changed-after-commit"
	c, _, err := s.Load()
	if err != nil || c.Switches[0].Name != "a" {
		t.Fatalf("Load after the editor changed its copy: %+v, %v", c.Switches, err)
	}
	c.Switches[0].Name = "changed-by-reader"
	if again, _, _ := s.Load(); again.Switches[0].Name != "a" {
		t.Fatalf("a reader's change leaked into the store: %+v", again.Switches)
	}
	if _, changed, err := s.Update(func(*config.Config) error { return nil }); err != nil || changed {
		t.Fatalf("no-op Update on the cached state = changed %v, %v", changed, err)
	}
}

// Replace stores a state made from a revision, and refuses when the
// stored revision moved since.
func TestReplace(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "v.db"), &config.Config{Host: config.DefaultHost("t")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, rev, _ := s.Load()
	c.AddVM(config.VM{Name: "a"})
	got, err := s.Replace(c, rev)
	if err != nil || got != rev+1 {
		t.Fatalf("Replace = %d, %v", got, err)
	}
	if now, r, _ := s.Load(); r != rev+1 || now.VM("a") == nil {
		t.Fatalf("after Replace: revision %d, VM a %v", r, now.VM("a") != nil)
	}
	if _, err := s.Replace(&config.Config{Host: c.Host}, rev); !errors.Is(err, ErrStale) {
		t.Fatalf("Replace from an old revision = %v, want ErrStale", err)
	}
}
