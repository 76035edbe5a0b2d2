// Command vswitchd is the vswitch daemon: it keeps the desired network in
// a durable store, converges the switches to it and serves the API that
// vswitchctl talks to.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // --pprof
	"os"
	"os/signal"
	"syscall"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/store"
	"github.com/vswitch/vswitch/internal/vswitchd"
)

func main() {
	var o vswitchd.Options
	var mode uint
	var debug bool

	flag.StringVar(&o.Store, "store", store.DefaultPath, "the state file")
	flag.StringVar(&o.Socket, "socket", api.SocketPath, "the API's unix socket")
	flag.UintVar(&mode, "socket-mode", 0o600, "the socket's permissions")
	flag.BoolVar(&debug, "debug", false, "log debug messages")
	flag.StringVar(&o.BPFDir, "bpf-dir", kdp.DefaultPinDir, "where the kernel data path pins its programs' maps and links, so that its switches forward while vswitchd restarts (\"\": not pinned)")
	flag.Func("kernel-attach", "how the kernel data path attaches to ports: tcx (the default; clsact on a kernel without tcx) or clsact (a tc filter: attaching is much cheaper, see bench/README)",
		func(v string) error {
			if v != "tcx" && v != "clsact" {
				return fmt.Errorf("want tcx or clsact, not %q", v)
			}
			o.KernelAttach = v
			return nil
		})
	flag.Func("socket-dir", "a directory where adapters' QEMU sockets may be, besides /run/vswitch and the API socket's (repeatable)",
		func(v string) error { o.SocketDirs = append(o.SocketDirs, v); return nil })
	vswitchd.ForwardingFlags(flag.CommandLine, &o)
	vswitchd.ClusterFlags(flag.CommandLine, &o.Cluster)
	vswitchd.WebFlags(flag.CommandLine, &o.Web)
	pprofAddr := flag.String("pprof", "", "serve Go's profiler (net/http/pprof) on this address, e.g. 127.0.0.1:6060 (for debugging; off if empty)")
	flag.Parse()
	o.SocketMode = os.FileMode(mode)
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *pprofAddr != "" {
		go func() { o.Logger.Error("pprof", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := vswitchd.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "vswitchd:", err)
		os.Exit(1)
	}
}
