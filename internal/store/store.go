// Package store keeps vswitch's desired state durably in one bbolt file:
// the whole state as a JSON document with a revision number that grows by
// one with every change. Each change is one transaction that commits
// (fsync'd) only if the edit succeeds and the new state validates; an
// error or a panic in the edit rolls it back, so nothing stored is lost or
// half-changed.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vswitch/vswitch/internal/config"
)

// DefaultPath is where vswitchd keeps its state.
const DefaultPath = "/var/lib/vswitch/vswitch.db"

// Errors.
var (
	// ErrCorrupt: the stored state cannot be read or does not validate.
	ErrCorrupt = errors.New("stored state is corrupt")
	// ErrLocked: another process (another vswitchd) has the store open.
	ErrLocked = errors.New("store is in use by another process")
	// ErrUnavailable: the store that holds the state (a cluster's etcd)
	// cannot be reached; nothing was changed.
	ErrUnavailable = errors.New("the cluster's etcd cannot be reached")
)

var (
	bucket   = []byte("vswitch")
	keyState = []byte("state")
	keyRev   = []byte("revision")
)

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	// The last state read or written, decoded, so that a write does not
	// decode the whole document again (only this process writes: a second
	// opener is refused).
	mu        sync.Mutex
	cached    *config.Config // never handed out: callers get clones
	cachedRaw []byte         // its JSON, as stored
	cachedRev uint64
}

// Open opens (creating if needed) the store at path. A new store starts
// with initial at revision 1.
func Open(path string, initial *config.Config) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil || b.Get(keyState) != nil {
			return err
		}
		if err := initial.Validate(); err != nil {
			return fmt.Errorf("initial state: %w", err)
		}
		return put(b, initial, 1)
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Load returns the stored state and its revision.
func (s *Store) Load() (*config.Config, uint64, error) {
	var c *config.Config
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		c, rev, _, err = s.get(tx.Bucket(bucket))
		return err
	})
	return c, rev, err
}

// LoadShared is Load without the copy: the state it returns may be the
// store's own cached one, which the caller must not change (clone it to
// edit). It is for the one writer (daemon.Controller), which reads the
// whole state on every write.
func (s *Store) LoadShared() (*config.Config, uint64, error) {
	var c *config.Config
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		rv := b.Get(keyRev)
		if len(rv) == 8 {
			s.mu.Lock()
			if s.cached != nil && s.cachedRev == binary.BigEndian.Uint64(rv) {
				c, rev = s.cached, s.cachedRev
			}
			s.mu.Unlock()
		}
		if c != nil {
			return nil
		}
		var err error
		c, rev, _, err = s.get(b)
		return err
	})
	return c, rev, err
}

// Update applies edit to a copy of the state in one transaction. The
// result is validated and stored with the next revision; if edit fails,
// the result does not validate, or edit panics (the panic goes on after
// the rollback), nothing changes. An edit that leaves the state as it was
// stores nothing and reports changed == false.
func (s *Store) Update(edit func(*config.Config) error) (rev uint64, changed bool, err error) {
	var next *config.Config
	var now []byte
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		cur, r, old, err := s.get(b)
		if err != nil {
			return err
		}
		rev, next = r, cur
		if err := edit(next); err != nil {
			return err
		}
		if err := next.Validate(); err != nil {
			return err
		}
		if now, err = json.Marshal(next); err != nil {
			return err
		}
		if bytes.Equal(old, now) {
			return nil
		}
		rev, changed = r+1, true
		return putRaw(b, now, rev)
	})
	if err != nil {
		return 0, false, err
	}
	if changed {
		s.remember(next.Clone(), now, rev) // committed; a copy, for the caller may keep next
	}
	return rev, changed, nil
}

// ErrStale: the state changed since the revision a Replace was based on.
var ErrStale = errors.New("stored state changed meanwhile")

// Replace stores next as the revision after rev, for a caller that read
// revision rev, made next from it and validated it (config.Validate) and
// hands it over: the store keeps next itself, so the caller must not
// change it afterwards. It fails with ErrStale if the stored revision is
// no longer rev. Update is the same for an edit the store validates.
func (s *Store) Replace(next *config.Config, rev uint64) (uint64, error) {
	raw, err := json.Marshal(next)
	if err != nil {
		return 0, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if rv := b.Get(keyRev); len(rv) != 8 || binary.BigEndian.Uint64(rv) != rev {
			return fmt.Errorf("%w (revision %d was read)", ErrStale, rev)
		}
		return putRaw(b, raw, rev+1)
	})
	if err != nil {
		return 0, err
	}
	s.remember(next, raw, rev+1)
	return rev + 1, nil
}

// get returns a copy of the stored state, its revision and its JSON: from
// the cache when the revision is the one cached, else decoded and checked.
func (s *Store) get(b *bolt.Bucket) (*config.Config, uint64, []byte, error) {
	raw, rv := b.Get(keyState), b.Get(keyRev)
	if raw == nil || len(rv) != 8 {
		return nil, 0, nil, fmt.Errorf("%w: no state or revision record", ErrCorrupt)
	}
	rev := binary.BigEndian.Uint64(rv)
	s.mu.Lock()
	if s.cached != nil && s.cachedRev == rev {
		c, j := s.cached.Clone(), s.cachedRaw
		s.mu.Unlock()
		return c, rev, j, nil
	}
	s.mu.Unlock()
	var c config.Config
	if err := config.Decode(bytes.NewReader(raw), &c); err != nil {
		return nil, 0, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := c.Validate(); err != nil {
		return nil, 0, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	j, err := json.Marshal(&c)
	if err != nil {
		return nil, 0, nil, err
	}
	s.remember(c.Clone(), j, rev)
	return &c, rev, j, nil
}

// remember caches c (which nobody else holds) as revision rev.
func (s *Store) remember(c *config.Config, raw []byte, rev uint64) {
	s.mu.Lock()
	s.cached, s.cachedRaw, s.cachedRev = c, raw, rev
	s.mu.Unlock()
}

func put(b *bolt.Bucket, c *config.Config, rev uint64) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return putRaw(b, raw, rev)
}

func putRaw(b *bolt.Bucket, raw []byte, rev uint64) error {
	if err := b.Put(keyState, raw); err != nil {
		return err
	}
	return b.Put(keyRev, binary.BigEndian.AppendUint64(nil, rev))
}

// The daemon's records of what it made on the host (TAPs, sockets, a NIC's
// identity before a switch took it over) live beside the state, in a
// bucket of their own, so that a restarted daemon can undo what no state
// names any more.
var recordBucket = []byte("records")

// Records returns every record: key → value.
func (s *Store) Records() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(recordBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	return out, err
}

// SetRecords writes put and deletes del in one transaction, fsync'd before
// it returns: a record written here is on disk before what it names is made.
func (s *Store) SetRecords(put map[string][]byte, del []string) error {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(recordBucket)
		if err != nil {
			return err
		}
		for _, k := range del {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, v := range put {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// A cluster member keeps the last cluster state it saw (its JSON and its
// etcd revision) in a bucket of its own, so that it keeps, and after a
// restart comes up with, that state while etcd cannot be reached.
var clusterBucket = []byte("cluster")

// ClusterCache returns the cached cluster state (nil if none) and its revision.
func (s *Store) ClusterCache() ([]byte, uint64, error) {
	var raw []byte
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(clusterBucket)
		if b == nil {
			return nil
		}
		if rv := b.Get(keyRev); len(rv) == 8 {
			rev = binary.BigEndian.Uint64(rv)
			raw = bytes.Clone(b.Get(keyState))
		}
		return nil
	})
	return raw, rev, err
}

// SetClusterCache keeps raw as the cluster state at rev, unless a newer
// revision is cached.
func (s *Store) SetClusterCache(raw []byte, rev uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(clusterBucket)
		if err != nil {
			return err
		}
		if rv := b.Get(keyRev); len(rv) == 8 && binary.BigEndian.Uint64(rv) >= rev {
			return nil
		}
		return putRaw(b, raw, rev)
	})
}

var keyHosts = []byte("hosts")

// ClusterHosts returns the cached registrations of the cluster's hosts (nil if none).
func (s *Store) ClusterHosts() ([]byte, error) {
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(clusterBucket); b != nil {
			raw = bytes.Clone(b.Get(keyHosts))
		}
		return nil
	})
	return raw, err
}

// SetClusterHosts caches the registrations of the cluster's hosts.
func (s *Store) SetClusterHosts(raw []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(clusterBucket)
		if err != nil {
			return err
		}
		return b.Put(keyHosts, raw)
	})
}
