// Package vswitchd runs the daemon: it opens the store, converges the
// switches to it, serves the API on a unix socket and, when its context
// ends, stops serving and closes the switches, leaving TAP devices in
// place so that workloads keep their interfaces across a restart.
package vswitchd

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/apiserver"
	"github.com/vswitch/vswitch/internal/cluster"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/port/poll"
	"github.com/vswitch/vswitch/internal/sockfile"
	"github.com/vswitch/vswitch/internal/store"
	"github.com/vswitch/vswitch/internal/vmrun"
	"github.com/vswitch/vswitch/internal/web"
)

// Options configure Run; zero fields take defaults.
type Options struct {
	Store      string      // store.DefaultPath if ""
	Socket     string      // api.SocketPath if ""
	SocketMode os.FileMode // 0600 if 0
	Logger     *slog.Logger
	// Threads is the number of forwarding threads; DefaultThreads if 0.
	Threads int
	// BusyPoll keeps a forwarding thread polling this long after its last
	// frame instead of sleeping (poll.Config.BusyPoll): DefaultBusyPoll if
	// 0; negative: sleep at once.
	BusyPoll time.Duration
	// SocketDirs are directories besides /run/vswitch and the API
	// socket's where adapters' QEMU sockets may be.
	SocketDirs []string
	// Ready is closed once the API is served (tests wait on it).
	Ready chan struct{}
	// BPFDir is where the kernel data path pins its maps and links, so
	// that its switches forward while vswitchd restarts ("": not pinned,
	// the programs go with the process).
	BPFDir string
	// KernelAttach is how the kernel data path attaches to ports: "tcx"
	// (or ""; clsact where the kernel has no tcx) or "clsact".
	KernelAttach string
	// HeaderTimeout is how long a client may take to send a request's
	// headers (10 s if 0); the whole request may take 3 times as long, an
	// idle connection is closed after 6 times as long.
	HeaderTimeout time.Duration
	// Cluster makes the host a member of a cluster (ClusterOptions.Etcd set).
	Cluster ClusterOptions
	// Web serves the web console and the API on TCP (Web.Addr set); its
	// token is kept beside the store unless Web.TokenFile says where.
	Web web.Options
}

// WebFlags registers the web console's flags on fs.
func WebFlags(fs *flag.FlagSet, o *web.Options) {
	fs.StringVar(&o.Addr, "web", "", "serve the web console and the API on this TCP address, e.g. "+web.DefaultAddr+" (off if empty; a non-loopback address needs --web-cert and --web-key)")
	fs.StringVar(&o.Cert, "web-cert", "", "the web console's TLS certificate (PEM)")
	fs.StringVar(&o.Key, "web-key", "", "the web console's TLS key (PEM)")
}

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Store == "" {
		o.Store = store.DefaultPath
	}
	if o.Socket == "" {
		o.Socket = api.SocketPath
	}
	if o.SocketMode == 0 {
		o.SocketMode = 0o600
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.Web.Addr != "" {
		if err := web.CheckOptions(o.Web); err != nil {
			return err
		}
		if o.Web.TokenFile == "" {
			o.Web.TokenFile = filepath.Join(filepath.Dir(o.Store), "console-token")
		}
	}
	if sockfile.Live(o.Socket) {
		return fmt.Errorf("API socket %s: %w (another vswitchd serves it: stop it first, or give this one another --socket)", o.Socket, sockfile.ErrInUse)
	}
	initial := &config.Config{Host: config.DefaultHost(machineID())}
	st, err := store.Open(o.Store, initial)
	if err != nil {
		return err
	}
	defer st.Close()
	// The kernel data path reports station moves to the controller, which
	// exists only once the data path does.
	var moves atomic.Pointer[daemon.Controller]
	onMove := func(m kdp.Move) {
		if c := moves.Load(); c != nil {
			c.KernelMove(m)
		}
	}
	var kern *kdp.Datapath
	kernWhy := ""
	if kern, err = kdp.Open(kdp.Options{PinDir: o.BPFDir, OnMove: onMove, Clsact: o.KernelAttach == "clsact"}); err != nil {
		kern, kernWhy = nil, err.Error()
		log.Warn("the kernel data path is not available: switches run on the userspace core (auto ones; kernel ones are refused)", "why", err)
	} else {
		defer kern.Close() // after the switches; pinned, the programs go on forwarding
	}
	var member *cluster.Cluster
	var vtep netip.Addr
	var overlayMTU int
	if len(o.Cluster.Etcd) > 0 {
		if member, vtep, overlayMTU, err = joinCluster(&o.Cluster, st, initial, kern != nil, log); err != nil {
			return err
		}
		defer member.Close() // after the controller: the lease goes last
	}
	pc := o.PollConfig()
	pool, err := poll.New(pc)
	if err != nil {
		return err
	}
	defer pool.Close() // after the switches (deferred calls run last first)
	log.Info("forwarding threads", "threads", pc.Threads, "busy-poll", pc.BusyPoll)
	be := daemon.OSBackend{}
	deps := daemon.Deps{Store: st, Backend: be, Host: be, Runner: vmrun.New(log, filepath.Join(filepath.Dir(o.Socket), "vm")), Poller: pool, Log: log,
		APISocket: o.Socket, SocketDirs: o.SocketDirs}
	if member != nil {
		deps.Cluster, deps.VTEP, deps.OverlayMTU = member, vtep, overlayMTU
	}
	if kern != nil {
		deps.Kernel = kern
	}
	deps.KernelWhy = kernWhy
	ctl := daemon.NewController(deps)
	moves.Store(ctl)
	changes, err := ctl.Start()
	log.Info("converged to the stored state", "store", o.Store, "changes", len(changes))
	if errors.Is(err, store.ErrCorrupt) { // other failures are logged and retried
		return err
	}
	defer ctl.Close()
	srv := apiserver.New(ctl, log)
	// The web console and the peer listener are opened before the API
	// serves anything: a failure to open them ends Run with nothing
	// serving, and the API never answers with the console half set up.
	var wc *webConsole
	if o.Web.Addr != "" {
		if wc, err = openWeb(o.Web, srv, log); err != nil {
			return err
		}
		defer wc.l.Close()
		defer wc.hs.Close()
	}
	var pl net.Listener
	if member != nil {
		if pl, err = net.Listen("tcp", o.Cluster.PeerAPI); err != nil {
			return fmt.Errorf("--peer-api %s: %w", o.Cluster.PeerAPI, err)
		}
		defer pl.Close()
	}
	l, err := apiserver.Listen(o.Socket, o.SocketMode)
	if err != nil {
		return fmt.Errorf("API socket: %w", err)
	}
	// A slow or idle client cannot hold a connection: headers within 10 s,
	// a whole request within 30 s, an idle connection closed after 60 s.
	ht := o.HeaderTimeout
	if ht == 0 {
		ht = 10 * time.Second
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: ht, ReadTimeout: 3 * ht,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 6 * ht}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(l) }()
	if pl != nil {
		ps := &http.Server{Handler: srv.PeerHandler(), ReadHeaderTimeout: ht, ReadTimeout: 3 * ht, WriteTimeout: 2 * time.Minute, IdleTimeout: 6 * ht}
		go ps.Serve(pl)
		defer ps.Close()
		log.Info("serving the other hosts' reads", "addr", o.Cluster.PeerAPI)
	}
	if wc != nil {
		wc.serve(log)
	}
	log.Info("vswitchd serving", "socket", o.Socket)
	if o.Ready != nil {
		close(o.Ready)
	}
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	os.Remove(o.Socket)
	log.Info("vswitchd stopped; devices left in place for the next start")
	return nil
}

// machineID identifies the host for the default MAC pool.
func machineID() string {
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b))
	}
	h, _ := os.Hostname()
	return h
}

// webConsole is the web console (package web) over the API, and its server.
type webConsole struct {
	hs *http.Server // with a TLSConfig when the console is served over TLS
	l  net.Listener
}

// openWeb makes the console (its token read or made) and opens its
// listener; the API hands out its URL from now on.
func openWeb(o web.Options, srv *apiserver.Server, log *slog.Logger) (*webConsole, error) {
	var tc *tls.Config
	if o.Cert != "" {
		cert, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, fmt.Errorf("--web-cert %s, --web-key %s: %w", o.Cert, o.Key, err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	con, err := web.New(o, srv.Handler(), log)
	if err != nil {
		return nil, err
	}
	l, err := con.Listen(o.Addr)
	if err != nil {
		return nil, err
	}
	srv.SetConsole(con)
	// Requests are read within 30 s; the event stream, once its request is
	// read, stays open (it sets its own write deadline per event).
	hs := &http.Server{Handler: con.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: time.Minute, TLSConfig: tc}
	return &webConsole{hs: hs, l: l}, nil
}

// serve serves the console until its server is closed.
func (w *webConsole) serve(log *slog.Logger) {
	go func() {
		var err error
		if w.hs.TLSConfig != nil {
			err = w.hs.ServeTLS(w.l, "", "")
		} else {
			err = w.hs.Serve(w.l)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("web console", "err", err)
		}
	}()
	log.Info("serving the web console", "addr", w.l.Addr().String(), "url", "vswitchctl console prints it")
}
