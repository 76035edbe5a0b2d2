// Command vswitchd is the vswitch daemon: it keeps the desired network in
// a durable store, converges the switches to it and serves the API that
// vswitchctl talks to.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vswitch/vswitch/internal/api"
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
	flag.IntVar(&o.Threads, "cpus", 0, "the former name of -threads")
	flag.IntVar(&o.Threads, "threads", 0, fmt.Sprintf("forwarding threads, each a CPU when busy (0: half the machine's CPUs, here %d)", vswitchd.DefaultThreads()))
	flag.DurationVar(&o.BusyPoll, "busy-poll", vswitchd.DefaultBusyPoll, "how long a forwarding thread keeps polling after its last frame before it sleeps: longer gives lower latency for a busier CPU (0: sleep at once)")
	flag.Parse()
	o.SocketMode = os.FileMode(mode)
	if o.BusyPoll == 0 {
		o.BusyPoll = -1 // Options: negative is "never poll", 0 the default
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := vswitchd.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "vswitchd:", err)
		os.Exit(1)
	}
}
