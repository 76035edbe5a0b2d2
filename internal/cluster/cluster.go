// Package cluster keeps a vswitch cluster's one desired state in etcd and
// registers this host in it. The state is one key per object (state.go),
// written only by transactions that compare the state's revision, so every
// write (a MAC taken from the pool, a VNI allocated, a name claimed) is
// one etcd transaction and two hosts never both succeed on the same revision.
// Hosts register under a lease (a heartbeat): a host whose lease expires
// is shown down, its objects stay. The last state seen is cached in the
// host's own bbolt file, so that a host keeps (and after a restart comes
// up with) the last state while etcd cannot be reached; writes then fail
// at once, naming etcd.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/store"
)

// Keys under Options.Prefix.
const (
	keyHosts = "hosts/"     // hosts/NAME: a host's registration (no lease: kept while it is down)
	keyLive  = "live/"      // live/NAME: present while the host's lease lives
	keyToken = "peer-token" // the token hosts' API listeners for each other require
	// DefaultPrefix is where a cluster's keys are.
	DefaultPrefix = "/vswitch/v1/"
)

// ErrUnavailable: etcd cannot be reached; nothing was changed.
var ErrUnavailable = store.ErrUnavailable

// Options say how to join.
type Options struct {
	Endpoints []string
	TLS       *tls.Config // nil: plain HTTP
	Host      string      // this host's name
	VTEP      netip.Addr  // this host's VXLAN tunnel endpoint
	MTU       int         // the MTU adapters of spanning switches get here
	API       string      // host:port where this host serves the other hosts' reads
	Version   string
	Kernel    bool         // this host has the kernel data path (where auto switches run)
	Cache     *store.Store // the host's own store: the last state seen is kept in it
	Initial   *config.Config
	Log       *slog.Logger
	LeaseTTL  time.Duration // 10 s if 0
	Timeout   time.Duration // of one etcd request; 3 s if 0
	Prefix    string        // DefaultPrefix if ""
}

// registration is what hosts/NAME and live/NAME hold.
type registration struct {
	Name     string    `json:"name"`
	VTEP     string    `json:"vtep"`
	MTU      int       `json:"mtu"`
	API      string    `json:"api"`
	Version  string    `json:"version"`
	Kernel   bool      `json:"kernel,omitempty"` // the host has the kernel data path
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"lastSeen"`
}

// Cluster is this host's membership. Its methods are safe for concurrent use.
type Cluster struct {
	o   Options
	cli *clientv3.Client
	log *slog.Logger
	reg registration

	mu       sync.Mutex
	state    *config.Config // the last state seen (never changed: replaced whole)
	rev      uint64         // its revision (state/rev's mod revision)
	hosts    map[string]registration
	live     map[string]bool
	onChange func()
	lease    clientv3.LeaseID
	offline  error                // why etcd is not followed now; nil while it is
	token    string               // the peer token
	session  *concurrency.Session // holds the write lock's key; nil until the first write

	cacheRev  uint64
	cacheKick chan struct{}
	objs      *objects // the state as the watch has it, key by key
	objRev    uint64   // its revision
	offerKick chan struct{}
	// unnotified: publish made a newer state the state, or the hosts
	// changed, and OnChange's function was not told yet (the state worker
	// tells it, whoever published: a read's Refresh may publish what the
	// watch brought before the worker does, and the host must converge to
	// it all the same).
	unnotified bool
	cacheCfg   *config.Config // the newest state for the cache writer

	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// Join connects to etcd, registers this host (refusing a name a live host
// with another VTEP holds), reads the state (creating it from Initial if
// the cluster has none) and starts watching. If etcd cannot be reached
// but the cache holds a state, Join comes up with it and keeps trying.
func Join(o Options) (*Cluster, error) {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: o.Endpoints, TLS: o.TLS, DialTimeout: o.Timeout,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, Logger: zap.NewNop()}) // vswitchd logs what matters itself
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(o.Endpoints, ","), err)
	}
	now := time.Now().UTC()
	c := &Cluster{o: o, cli: cli, log: o.Log, hosts: map[string]registration{}, live: map[string]bool{},
		reg: registration{Name: o.Host, VTEP: o.VTEP.String(), MTU: o.MTU, API: o.API, Version: o.Version, Kernel: o.Kernel, Started: now, LastSeen: now}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.offline = errors.New("not connected yet")
	c.cacheKick, c.offerKick = make(chan struct{}, 1), make(chan struct{}, 1)
	c.done.Add(2)
	go c.cacheWriter()
	go c.stateWorker()
	if raw, rev, err := o.Cache.ClusterCache(); err == nil && raw != nil {
		var cfg config.Config
		if err := json.Unmarshal(raw, &cfg); err == nil && cfg.Validate() == nil {
			c.state, c.rev = normalise(&cfg), rev
			c.objs, c.objRev = split(c.state), rev
		}
	}
	if raw, err := o.Cache.ClusterHosts(); err == nil && raw != nil {
		json.Unmarshal(raw, &c.hosts) // the hosts last seen: spanning switches reach them while etcd is away
	}
	err = c.register()
	if err == nil {
		err = c.readAll()
	}
	var owned *NameTakenError
	switch {
	case errors.As(err, &owned):
		c.abort()
		return nil, err
	case err != nil && c.state == nil:
		c.abort()
		if why := diagnose(o.Endpoints, o.TLS, o.Timeout); why != nil {
			return nil, fmt.Errorf("%w: %w", err, why)
		}
		return nil, err
	case err != nil:
		c.log.Warn("etcd cannot be reached: serving the last state seen, retrying", "err", err)
	}
	c.done.Add(1)
	go c.run(err == nil)
	return c, nil
}

// abort undoes a Join that failed.
func (c *Cluster) abort() {
	c.cancel()
	c.done.Wait()
	c.cli.Close()
}

// kick wakes a worker waiting on ch, if it is not awake already.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// diagnose says why the endpoints cannot be reached when the client only
// says its deadline passed: the first endpoint's connection or TLS
// handshake error (a certificate refused is the usual cause), or nil.
func diagnose(endpoints []string, tc *tls.Config, timeout time.Duration) error {
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("endpoint %q: %w", e, err)
		}
		d := &net.Dialer{Timeout: timeout}
		if u.Scheme != "https" {
			conn, err := d.Dial("tcp", u.Host)
			if err != nil {
				return fmt.Errorf("endpoint %s: %w", e, err)
			}
			conn.Close()
			continue
		}
		cfg := &tls.Config{}
		if tc != nil {
			cfg = tc.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		conn, err := tls.DialWithDialer(d, "tcp", u.Host, cfg)
		if err != nil {
			return fmt.Errorf("endpoint %s: TLS: %w (check --etcd-cacert, --etcd-cert and --etcd-key)", e, err)
		}
		// The server may refuse the client's certificate only after the
		// handshake: a read shows it.
		conn.SetReadDeadline(time.Now().Add(timeout))
		_, rerr := conn.Read(make([]byte, 1))
		conn.Close()
		if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) && !errors.Is(rerr, io.EOF) {
			return fmt.Errorf("endpoint %s: TLS: %w (check --etcd-cacert, --etcd-cert and --etcd-key)", e, rerr)
		}
	}
	return nil
}

// NameTakenError: a live host with another VTEP has this host's name.
type NameTakenError struct{ Name, VTEP string }

func (e *NameTakenError) Error() string {
	return fmt.Sprintf("host name %q is registered by a live host with VTEP %s: give this host another --host-name (or stop that one)", e.Name, e.VTEP)
}

func (c *Cluster) key(k string) string { return c.o.Prefix + k }

func (c *Cluster) req() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.o.Timeout)
}

// unavailable wraps an etcd failure.
func (c *Cluster) unavailable(err error) error {
	return fmt.Errorf("%w (%s): %v; nothing was changed", ErrUnavailable, strings.Join(c.o.Endpoints, ","), err)
}

// register grants a lease and puts this host's keys under it.
func (c *Cluster) register() error {
	ctx, cancel := c.req()
	defer cancel()
	live := c.key(keyLive + c.o.Host)
	r, err := c.cli.Get(ctx, live)
	if err != nil {
		return c.unavailable(err)
	}
	if len(r.Kvs) > 0 {
		var other registration
		if json.Unmarshal(r.Kvs[0].Value, &other) == nil && other.VTEP != c.reg.VTEP {
			return &NameTakenError{Name: c.o.Host, VTEP: other.VTEP}
		}
		// The same host restarted before its old lease ran out: take over.
		if old := clientv3.LeaseID(r.Kvs[0].Lease); old != 0 {
			c.cli.Revoke(ctx, old)
		}
	}
	lease, err := c.cli.Grant(ctx, int64(c.o.LeaseTTL/time.Second))
	if err != nil {
		return c.unavailable(err)
	}
	c.reg.LastSeen = time.Now().UTC()
	raw, _ := json.Marshal(c.reg)
	_, err = c.cli.Txn(ctx).Then(clientv3.OpPut(live, string(raw), clientv3.WithLease(lease.ID)),
		clientv3.OpPut(c.key(keyHosts+c.o.Host), string(raw))).Commit()
	if err != nil {
		return c.unavailable(err)
	}
	c.mu.Lock()
	c.lease = lease.ID
	c.mu.Unlock()
	return nil
}

// readAll reads the state (creating it if the cluster has none) and the hosts.
func (c *Cluster) readAll() error {
	ctx, cancel := c.req()
	defer cancel()
	if c.o.Initial != nil {
		ops, err := diff(c.o.Prefix, nil, c.o.Initial)
		if err != nil {
			return err
		}
		_, err = c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(c.key(keyRev)), "=", 0)).
			Then(append(ops, clientv3.OpPut(c.key(keyRev), ""))...).Commit()
		if err != nil {
			return c.unavailable(err)
		}
	}
	tok := make([]byte, 32)
	rand.Read(tok)
	token := hex.EncodeToString(tok) // made here if no host made one before, else the one there
	tr, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(c.key(keyToken)), "=", 0)).
		Then(clientv3.OpPut(c.key(keyToken), token)).Else(clientv3.OpGet(c.key(keyToken))).Commit()
	if err != nil {
		return c.unavailable(err)
	}
	if g := tr.Responses[0].GetResponseRange(); !tr.Succeeded && g != nil && len(g.Kvs) > 0 {
		token = string(g.Kvs[0].Value)
	}
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
	r, err := c.cli.Get(ctx, c.key(keyStatePrefix), clientv3.WithPrefix())
	if err != nil {
		return c.unavailable(err)
	}
	if _, err := c.load(r.Kvs); err != nil {
		return err
	}
	h, err := c.cli.Get(ctx, c.key(keyHosts), clientv3.WithPrefix())
	if err != nil {
		return c.unavailable(err)
	}
	l, err := c.cli.Get(ctx, c.key(keyLive), clientv3.WithPrefix())
	if err != nil {
		return c.unavailable(err)
	}
	c.mu.Lock()
	c.hosts, c.live = map[string]registration{}, map[string]bool{}
	for _, kv := range h.Kvs {
		var reg registration
		if json.Unmarshal(kv.Value, &reg) == nil {
			c.hosts[reg.Name] = reg
		}
	}
	for _, kv := range l.Kvs {
		c.live[strings.TrimPrefix(string(kv.Key), c.key(keyLive))] = true
	}
	c.mu.Unlock()
	c.cacheHosts()
	return nil
}

// cacheHosts keeps the hosts' registrations in the host's store.
func (c *Cluster) cacheHosts() {
	c.mu.Lock()
	raw, err := json.Marshal(c.hosts)
	c.mu.Unlock()
	if err == nil {
		err = c.o.Cache.SetClusterHosts(raw)
	}
	if err != nil {
		c.log.Warn("caching the cluster's hosts", "err", err)
	}
}

// load makes a whole state read from etcd (a range of the state prefix)
// the objects and the state, if it is newer than what is held.
func (c *Cluster) load(kvs []*mvccpb.KeyValue) (bool, error) {
	o, rev, err := fromKVs(c.o.Prefix, kvs)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	if rev > c.objRev || c.objs == nil {
		c.objs, c.objRev = o, rev
	}
	c.mu.Unlock()
	return c.publish()
}

// publish makes the objects, if newer than the state, the state: it is
// assembled and validated whole (a state no writer validated is refused).
func (c *Cluster) publish() (bool, error) {
	c.mu.Lock()
	if c.objs == nil || c.state != nil && c.objRev <= c.rev {
		c.mu.Unlock()
		return false, nil
	}
	cfg, rev := c.objs.config(), c.objRev
	c.mu.Unlock()
	if err := cfg.Validate(); err != nil {
		return false, fmt.Errorf("%w: the cluster's state: %w", store.ErrCorrupt, err)
	}
	c.mu.Lock()
	if c.state != nil && rev <= c.rev {
		c.mu.Unlock()
		return false, nil
	}
	c.state, c.rev = cfg, rev
	c.mu.Unlock()
	c.cacheState(cfg, rev)
	c.tellLater()
	return true, nil
}

// tellLater has the state worker tell OnChange's function that the state
// or the hosts changed (on its goroutine: no caller waits for a converge).
func (c *Cluster) tellLater() {
	c.mu.Lock()
	c.unnotified = true
	c.mu.Unlock()
	kick(c.offerKick)
}

// stateWorker publishes what the watch brought: a host behind by many
// writes assembles, validates and converges once, not once per write.
func (c *Cluster) stateWorker() {
	defer c.done.Done()
	for {
		select {
		case <-c.offerKick:
		case <-c.ctx.Done():
			return
		}
		// Debounce: what comes within the next moment is taken in the
		// same pass, and this host's own write (whose watch event can
		// arrive before its transaction's answer) is not assembled again.
		select {
		case <-time.After(publishDelay):
		case <-c.ctx.Done():
			return
		}
		if _, err := c.publish(); err != nil {
			c.log.Error("the cluster's state cannot be read", "err", err)
			continue
		}
		c.mu.Lock()
		tell := c.unnotified
		c.unnotified = false
		c.mu.Unlock()
		if tell {
			c.changed()
		}
	}
}

// cacheState has the cache writer keep cfg (the state at rev) in the
// host's store: one fsync'd write for the latest of a burst of changes,
// off the path of writes and watch events.
func (c *Cluster) cacheState(cfg *config.Config, rev uint64) {
	c.mu.Lock()
	if rev > c.cacheRev {
		c.cacheCfg, c.cacheRev = cfg, rev
	}
	c.mu.Unlock()
	kick(c.cacheKick)
}

// Pacing of the watch's and the cache's work.
const (
	publishDelay  = 5 * time.Millisecond   // the state worker's debounce
	cacheInterval = 250 * time.Millisecond // the cache is written at most this often (and at Close)
)

// cacheWriter writes the latest state to cache, at most every
// cacheInterval, until Close, then once more.
func (c *Cluster) cacheWriter() {
	defer c.done.Done()
	var written uint64
	for {
		stop := false
		select {
		case <-c.cacheKick:
			select {
			case <-time.After(cacheInterval):
			case <-c.ctx.Done():
				stop = true
			}
		case <-c.ctx.Done():
			stop = true
		}
		c.mu.Lock()
		cfg, rev := c.cacheCfg, c.cacheRev
		c.mu.Unlock()
		if rev > written {
			raw, err := json.Marshal(cfg)
			if err == nil {
				err = c.o.Cache.SetClusterCache(raw, rev)
			}
			if err != nil {
				c.log.Warn("caching the cluster's state", "err", err)
			} else {
				written = rev
			}
		}
		if stop {
			return
		}
	}
}

// OnChange sets what is called (on the watch's goroutine) after the state
// or the hosts changed.
func (c *Cluster) OnChange(f func()) {
	c.mu.Lock()
	c.onChange = f
	c.mu.Unlock()
}

func (c *Cluster) changed() {
	c.mu.Lock()
	f := c.onChange
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// run keeps the lease alive and watches the state and the hosts,
// re-registering and re-reading after etcd was lost.
func (c *Cluster) run(ok bool) {
	defer c.done.Done()
	for c.ctx.Err() == nil {
		if !ok {
			if err := c.register(); err == nil {
				if err = c.readAll(); err == nil {
					c.log.Info("etcd is back: re-registered and re-read the state")
					c.changed()
					ok = true
				}
			}
			if !ok {
				select {
				case <-c.ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
		}
		c.follow()
		ok = false
	}
}

// follow keeps the lease and applies watch events until either fails.
func (c *Cluster) follow() {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(c.ctx))
	defer cancel()
	c.mu.Lock()
	lease, from := c.lease, c.rev
	c.mu.Unlock()
	ka, err := c.cli.KeepAlive(ctx, lease)
	if err != nil {
		return
	}
	c.setOffline(nil)
	defer c.setOffline(errors.New("the connection to etcd was lost"))
	wc := c.cli.Watch(ctx, c.o.Prefix, clientv3.WithPrefix(), clientv3.WithRev(int64(from)+1))
	tick := time.NewTicker(c.o.LeaseTTL / 2)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case _, alive := <-ka:
			if !alive {
				c.log.Warn("lost the cluster lease (etcd unreachable?): re-registering")
				return
			}
		case <-tick.C:
			c.reg.LastSeen = time.Now().UTC()
			raw, _ := json.Marshal(c.reg)
			rctx, rcancel := c.req()
			_, err := c.cli.Put(rctx, c.key(keyHosts+c.o.Host), string(raw))
			rcancel()
			if err != nil {
				c.log.Warn("etcd unreachable", "err", err)
				return
			}
		case wr, open := <-wc:
			if !open || wr.Err() != nil {
				if c.ctx.Err() == nil {
					c.log.Warn("watch of the cluster's state ended", "err", wr.Err())
				}
				return
			}
			hostsMoved, stateMoved := c.takeEvents(wr.Events)
			if stateMoved {
				kick(c.offerKick)
			}
			if hostsMoved {
				c.cacheHosts()
				c.tellLater()
			}
		}
	}
}

// takeEvents takes watch events into the objects, the hosts and who lives,
// all under one hold of c.mu: a reader never sees the objects at a
// revision whose events are only partly in (one watch response carries
// every event of a revision). hostsMoved says a host came, went or has
// another endpoint (the tunnels change); stateMoved that the objects did
// (the state worker publishes them).
func (c *Cluster) takeEvents(events []*clientv3.Event) (hostsMoved, stateMoved bool) {
	type failure struct {
		key string
		err error
	}
	var failed []failure
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		for _, f := range failed {
			c.log.Error("the cluster's state cannot be read", "key", f.key, "err", f.err)
		}
	}()
	for _, ev := range events {
		k := strings.TrimPrefix(string(ev.Kv.Key), c.o.Prefix)
		del := ev.Type == clientv3.EventTypeDelete
		switch {
		case strings.HasPrefix(k, keyStatePrefix):
			var v []byte
			if !del {
				v = ev.Kv.Value
			}
			rev := uint64(ev.Kv.ModRevision)
			// Older than the objects (a full read, or this host's own
			// write, got there first): skipped. The events of one
			// revision all pass, the same revision again is the same values.
			if rev >= c.objRev {
				if c.objs == nil { // this host's own write was the last: its state is the objects
					c.objs = split(c.state)
				}
				if err := c.objs.apply(k, v); err != nil {
					failed = append(failed, failure{k, err})
				}
				c.objRev = rev
			}
			stateMoved = true
		case strings.HasPrefix(k, keyHosts):
			var reg registration
			if del {
				delete(c.hosts, strings.TrimPrefix(k, keyHosts))
				hostsMoved = true
			} else if json.Unmarshal(ev.Kv.Value, &reg) == nil {
				hostsMoved = hostsMoved || c.hosts[reg.Name].VTEP != reg.VTEP
				c.hosts[reg.Name] = reg
			}
		case strings.HasPrefix(k, keyLive):
			c.live[strings.TrimPrefix(k, keyLive)] = !del
		}
	}
	return hostsMoved, stateMoved
}

// Close stops watching and withdraws this host's lease (it shows down at once).
func (c *Cluster) Close() error {
	c.mu.Lock()
	lease := c.lease
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	c.cli.Revoke(ctx, lease)
	cancel()
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s != nil {
		s.Orphan() // stop its keep-alive: its lease, and any write-lock key under it, expires
	}
	c.cancel()
	c.done.Wait()
	return c.cli.Close()
}

func (c *Cluster) setOffline(err error) {
	c.mu.Lock()
	c.offline = err
	c.mu.Unlock()
}

// Online says why a write cannot be stored now (etcd was lost and is not
// back yet), or nil.
func (c *Cluster) Online() error {
	c.mu.Lock()
	offline := c.offline
	c.mu.Unlock()
	if offline != nil {
		return c.unavailable(offline)
	}
	// The connection is seen to fail (refused, reset) long before the
	// lease's keep-alive gives up.
	switch st := c.cli.ActiveConnection().GetState(); st {
	case connectivity.TransientFailure, connectivity.Connecting, connectivity.Shutdown: // refused, or dialling again after a loss
		return c.unavailable(fmt.Errorf("connection %s", strings.ToLower(st.String())))
	}
	return nil
}

// Lock takes the cluster's write lock (an etcd mutex: writers queue in
// order, none starves), so that a write's read, edit, local apply and
// compare-and-swap are not raced by other hosts' writes; call unlock after.
func (c *Cluster) Lock() (unlock func(), err error) {
	if err := c.Online(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == nil || isDone(s.Done()) {
		if s, err = concurrency.NewSession(c.cli, concurrency.WithTTL(int(c.o.LeaseTTL/time.Second)), concurrency.WithContext(c.ctx)); err != nil {
			return nil, c.unavailable(err)
		}
		c.mu.Lock()
		c.session = s
		c.mu.Unlock()
	}
	m := concurrency.NewMutex(s, c.key("write-lock/"))
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		return nil, c.unavailable(fmt.Errorf("the cluster's write lock: %w", err))
	}
	return func() {
		ctx, cancel := c.req()
		defer cancel()
		m.Unlock(ctx) // if it fails, the key goes with the session's lease
	}, nil
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Token is the secret hosts' API listeners for each other require (made
// once per cluster, kept in etcd; "" until read).
func (c *Cluster) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Name is this host's name.
func (c *Cluster) Name() string { return c.o.Host }

// Refresh reads the state from etcd, if it can be reached, so that what
// follows sees every write made through any host before it (the watch
// may lag behind).
func (c *Cluster) Refresh() error {
	if err := c.Online(); err != nil {
		return err
	}
	ctx, cancel := c.req()
	defer cancel()
	r, err := c.cli.Get(ctx, c.key(keyRev), clientv3.WithKeysOnly()) // the revision: the objects only if newer
	if err != nil {
		return c.unavailable(err)
	}
	if len(r.Kvs) == 0 {
		return fmt.Errorf("%w: the cluster has no state (no %s)", store.ErrCorrupt, keyRev)
	}
	want := uint64(r.Kvs[0].ModRevision)
	// A write another host just made is on its way in the watch (a few
	// milliseconds behind): waiting for it costs less than reading every
	// object again, which is done only if it does not come.
	for deadline := time.Now().Add(watchCatchUp); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		current, watched := want <= c.rev, want <= c.objRev
		c.mu.Unlock()
		switch {
		case current:
			return nil
		case watched:
			_, err = c.publish()
			return err
		}
		if time.Now().After(deadline) {
			break
		}
	}
	all, err := c.cli.Get(ctx, c.key(keyStatePrefix), clientv3.WithPrefix())
	if err != nil {
		return c.unavailable(err)
	}
	_, err = c.load(all.Kvs)
	return err
}

// watchCatchUp is how long Refresh waits for the watch to bring a newer
// state before it reads the whole state itself.
const watchCatchUp = 100 * time.Millisecond

// Load returns a copy of the cluster's state and its revision: read from
// etcd (Refresh), or the last state seen while etcd cannot be reached.
func (c *Cluster) Load() (*config.Config, uint64, error) {
	if err := c.Refresh(); errors.Is(err, store.ErrCorrupt) {
		return nil, 0, err
	}
	s, rev, err := c.LoadShared()
	if err != nil {
		return nil, 0, err
	}
	return s.Clone(), rev, nil
}

// LoadShared is Load without the copy: the caller must not change it.
func (c *Cluster) LoadShared() (*config.Config, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		return nil, 0, fmt.Errorf("%w: no state read yet", ErrUnavailable)
	}
	return c.state, c.rev, nil
}

// Replace stores next if the cluster's state is still at rev: one etcd
// transaction. It fails with store.ErrStale if another write came first
// (the watch brings the newer state: the next Refresh waits for it) and
// with ErrUnavailable if etcd cannot be reached.
func (c *Cluster) Replace(next *config.Config, rev uint64) (uint64, error) {
	c.mu.Lock()
	prev, held := c.state, c.rev
	c.mu.Unlock()
	if prev == nil || held != rev {
		return 0, fmt.Errorf("%w (revision %d was read, %d is held)", store.ErrStale, rev, held)
	}
	ops, err := diff(c.o.Prefix, prev, next)
	if err != nil {
		return 0, err
	}
	if len(ops) >= maxTxnOps {
		return 0, fmt.Errorf("%w: this write changes %d objects of the cluster's state and one write may change at most %d "+
			"(etcd's --max-txn-ops, 128 by default): make it in steps (remove a switch's adapters, then the switch)", ErrTooBig, len(ops), maxTxnOps-1)
	}
	ctx, cancel := c.req()
	defer cancel()
	k := c.key(keyRev)
	r, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", int64(rev))).
		Then(append(ops, clientv3.OpPut(k, ""))...).Commit()
	if err != nil {
		return 0, c.unavailable(err)
	}
	if !r.Succeeded {
		return 0, fmt.Errorf("%w (revision %d was read)", store.ErrStale, rev)
	}
	nrev := uint64(r.Header.Revision)
	sortState(next) // as the objects assemble it: the same order on every host
	c.mu.Lock()
	if c.objRev < nrev { // no later write seen yet: the objects are exactly next, split when the watch needs them
		c.objs, c.objRev = nil, nrev
	}
	if c.rev < nrev {
		c.state, c.rev = next, nrev
	}
	c.mu.Unlock()
	c.cacheState(next, nrev)
	return nrev, nil
}

// maxTxnOps is etcd's default bound on the operations of one transaction.
const maxTxnOps = 128

// ErrTooBig: a write changes more objects than one etcd transaction takes.
var ErrTooBig = errors.New("the write is too big for one transaction")

// VTEPs returns the tunnel endpoint of every registered host, up or down
// (a host that comes back is reached at once), by name.
func (c *Cluster) VTEPs() map[string]netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]netip.Addr, len(c.hosts))
	for name, reg := range c.hosts {
		if a, err := netip.ParseAddr(reg.VTEP); err == nil {
			out[name] = a
		}
	}
	return out
}

// Hosts lists the registered hosts, sorted by name.
func (c *Cluster) Hosts() []api.HostInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []api.HostInfo
	for _, reg := range c.hosts {
		out = append(out, api.HostInfo{Name: reg.Name, VTEP: reg.VTEP, MTU: reg.MTU, API: reg.API, Version: reg.Version, KernelPath: reg.Kernel,
			Started: reg.Started.Format(time.RFC3339), LastSeen: reg.LastSeen.Format(time.RFC3339),
			Up: c.live[reg.Name], Self: reg.Name == c.o.Host})
	}
	slices.SortFunc(out, func(a, b api.HostInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
