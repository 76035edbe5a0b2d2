package daemon

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/vswitch/vswitch/internal/config"
)

// Records is where the daemon keeps what it has made on the host (the
// store's records bucket): a record is on disk before the thing it names
// is made, and goes only once the thing is gone, so that a daemon that
// crashed at any step finds, when it starts again, everything it may have
// left, and removes what the state no longer names.
type Records interface {
	// Records returns every record.
	Records() (map[string][]byte, error)
	// SetRecords writes put and deletes del, durably, in one step.
	SetRecords(put map[string][]byte, del []string) error
}

// MemRecords keeps records in memory: a daemon without a store (tests).
type MemRecords struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Records implements Records.
func (r *MemRecords) Records() (map[string][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.m), nil
}

// SetRecords implements Records.
func (r *MemRecords) SetRecords(put map[string][]byte, del []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string][]byte{}
	}
	for _, k := range del {
		delete(r.m, k)
	}
	maps.Copy(r.m, put)
	return nil
}

// Record keys: "port/" + what the port's OS side is (a link in a
// namespace, a socket path), "identity/" + a NIC.
const (
	portPrefix     = "port/"
	identityPrefix = "identity/"
)

// key names the host object a spec makes, or "" for one the daemon does
// not own (the uplink NIC).
func (s PortSpec) key() string {
	switch s.Kind {
	case KindUplink:
		return ""
	case KindHost, KindJoin, KindTunnel, string(config.AttachTAP):
		return portPrefix + "link//" + s.Device
	case string(config.AttachNetns):
		return portPrefix + "link/" + s.Namespace + "/" + s.Device
	}
	return socketKey(s.Socket)
}

// portKey names a port's host object for hostStep: its record key, or
// the uplink NIC.
func portKey(s PortSpec) string {
	if k := s.key(); k != "" {
		return k
	}
	return "uplink/" + s.Device
}

// socketKey is the record key of a QEMU socket (stream or dgram).
func socketKey(path string) string { return portPrefix + "socket/" + path }

// identityRecord is a NIC's identity as it was before a switch took it.
type identityRecord struct {
	Switch string          `json:"switch"`
	Host   string          `json:"hostAdapter"`
	Saved  json.RawMessage `json:"saved"`
}

func (d *Daemon) loadRecords() error {
	if d.recs != nil {
		return nil
	}
	m, err := d.rec.Records()
	if err != nil {
		return fmt.Errorf("reading the records of host objects: %w", err)
	}
	if m == nil {
		m = map[string][]byte{}
	}
	d.recs = m
	return nil
}

// own records the specs not recorded yet, in one durable write.
func (d *Daemon) own(specs []PortSpec) error {
	put := map[string][]byte{}
	for _, s := range specs {
		if k := s.key(); k != "" && d.recs[k] == nil {
			b, err := json.Marshal(s)
			if err != nil {
				return err
			}
			put[k] = b
		}
	}
	if err := d.rec.SetRecords(put, nil); err != nil {
		return err
	}
	maps.Copy(d.recs, put)
	return nil
}

// disown forgets a record once what it names is gone.
func (d *Daemon) disown(key string) error {
	if key == "" || d.recs[key] == nil {
		return nil
	}
	if err := d.rec.SetRecords(nil, []string{key}); err != nil {
		return err
	}
	delete(d.recs, key)
	return nil
}

// identity returns the record of a NIC's identity, if there is one.
func (d *Daemon) identity(nic string) (identityRecord, bool, error) {
	var r identityRecord
	b := d.recs[identityPrefix+nic]
	if b == nil {
		return r, false, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, true, fmt.Errorf("record of the identity of %s: %w", nic, err)
	}
	return r, true, nil
}

// saveIdentity returns the NIC's identity as recorded before the first
// move (a crash may have cut that move short), recording it now if not.
func (d *Daemon) saveIdentity(sw, nic, host string) ([]byte, error) {
	r, ok, err := d.identity(nic)
	if err != nil {
		return nil, err
	}
	if ok && r.Host == host {
		return r.Saved, nil
	}
	if ok { // another host adapter held it: give it back to the NIC first
		if err := d.giveBackTo(r.Switch, r.Host, nic); err != nil {
			return nil, err
		}
	}
	saved, err := hostStep(d, identityPrefix+nic, func() ([]byte, error) { return d.backend.SaveIdentity(nic) }, nil)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(identityRecord{Switch: sw, Host: host, Saved: saved})
	if err != nil {
		return nil, err
	}
	k := identityPrefix + nic
	if err := d.rec.SetRecords(map[string][]byte{k: b}, nil); err != nil {
		return nil, err
	}
	d.recs[k] = b
	return saved, nil
}

// giveBackTo returns the NIC its identity from the host adapter and forgets the record.
func (d *Daemon) giveBackTo(sw, host, nic string) error {
	r, _, err := d.identity(nic)
	if err != nil {
		return &StepError{Switch: sw, Port: KindHost, Step: "read the record of " + nic, Err: err}
	}
	if _, err := hostStep(d, identityPrefix+nic, func() (struct{}, error) { return struct{}{}, d.backend.GiveBack(host, nic, r.Saved) }, nil); err != nil {
		return &StepError{Switch: sw, Port: KindHost, Step: "move host identity back to " + nic, Err: err}
	}
	if err := d.disown(identityPrefix + nic); err != nil {
		return &StepError{Switch: sw, Port: KindHost, Step: "forget the identity of " + nic, Err: err}
	}
	return nil
}

// sweep undoes what the records name and neither the plan nor a live
// switch holds: first a NIC's identity (from the host adapter, if it is
// still there), then the TAPs and sockets.
func (d *Daemon) sweep(want map[string]*switchPlan, note func(string, ...any)) []error {
	var errs []error
	held, keep := map[string]bool{}, map[string]bool{}
	for _, ls := range d.switches {
		if ls.tookOver != "" {
			held[ls.tookOver] = true
		}
		for _, p := range ls.ports {
			keep[p.spec.key()] = true
		}
		if ls.core != nil {
			keep[joinSpec(ls.opts.Name).key()] = true
		}
	}
	for _, sp := range want {
		for _, p := range sp.ports {
			keep[p.spec.key()] = true
		}
	}
	for _, k := range sortedKeys(d.recs) {
		nic, ok := strings.CutPrefix(k, identityPrefix)
		if !ok || held[nic] {
			continue
		}
		r, _, err := d.identity(nic)
		if err != nil {
			errs = append(errs, &StepError{Port: KindHost, Step: "read the record of " + nic, Err: err})
			continue
		}
		if err := d.giveBackTo(r.Switch, r.Host, nic); err != nil {
			errs = append(errs, err)
			continue
		}
		note("gave %s its identity back (left by switch %s)", nic, r.Switch)
	}
	for _, k := range sortedKeys(d.recs) {
		if !strings.HasPrefix(k, portPrefix) || keep[k] {
			continue
		}
		var s PortSpec
		if err := json.Unmarshal(d.recs[k], &s); err != nil {
			errs = append(errs, &StepError{Step: "read the record " + k, Err: err})
			continue
		}
		if err := d.remove(s); err != nil {
			errs = append(errs, err)
			continue
		}
		note("removed %s %s left by %s/%s", s.Kind, strings.TrimPrefix(k, portPrefix), s.Switch, s.Name)
	}
	return errs
}

// owns reports whether the daemon has a record of key.
func (d *Daemon) owns(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loadRecords() != nil {
		return false
	}
	return d.recs[key] != nil
}
