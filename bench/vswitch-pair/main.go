// Command vswitch-pair is the bench scripts' vswitch: it joins existing
// network namespaces through one switch, giving each a TAP eth0 on an
// untagged port, and optionally binds an uplink (an interface in a
// namespace, through AF_PACKET) as an external switch does; it runs until
// interrupted, then deletes the TAPs. It is the same data path as vswitchd
// (l2 with the tap and afpacket ports, read by poll's forwarding threads)
// without the management plane, so that the bench measures forwarding alone.
//
//	vswitch-pair -ns benchA[,benchB] [-uplink NS/IFACE] [-no-offloads] [-threads N] [-busy-poll D] [-goroutines] [-cpuprofile FILE]
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/afpacket"
	"github.com/vswitch/vswitch/internal/port/poll"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/vswitchd"
)

func main() {
	nss := flag.String("ns", "", "comma-separated network namespace names (ip netns) to join")
	uplink := flag.String("uplink", "", "NS/IFACE: also bind interface IFACE in namespace NS as the uplink")
	plain := flag.Bool("no-offloads", false, "open the TAPs without virtio-net headers (no TSO, no checksum offload)")
	cpu := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	var fwd vswitchd.Options // -threads and -busy-poll, as vswitchd's
	vswitchd.ForwardingFlags(flag.CommandLine, &fwd)
	goroutines := flag.Bool("goroutines", false, "read every port on a goroutine of its own, without forwarding threads (for comparison)")
	flag.Parse()
	if err := run(strings.Split(*nss, ","), *uplink, *plain, *cpu, fwd, *goroutines); err != nil {
		fmt.Fprintln(os.Stderr, "vswitch-pair:", err)
		os.Exit(1)
	}
}

func run(nss []string, uplink string, plain bool, cpuprofile string, fwd vswitchd.Options, goroutines bool) error {
	if nss[0] == "" || len(nss) < 2 && uplink == "" {
		return fmt.Errorf("-ns needs two namespace names, or one and -uplink; got %q", strings.Join(nss, ","))
	}
	o := l2.Options{Name: "bench", Logger: slog.Default()}
	if !goroutines {
		pool, err := poll.New(fwd.PollConfig())
		if err != nil {
			return err
		}
		defer pool.Close()
		o.Poller = pool
	}
	sw, err := l2.New(o)
	if err != nil {
		return err
	}
	defer sw.Close()
	var taps []*tap.Port
	defer func() {
		for _, p := range taps {
			p.Delete()
		}
	}()
	for _, ns := range nss {
		p, err := tap.Open(tap.Config{Namespace: ns, NoOffloads: plain})
		if err != nil {
			return err
		}
		taps = append(taps, p)
		if err := sw.AddPort(ns, p, l2.PortConfig{}); err != nil {
			return err
		}
	}
	if uplink != "" {
		ns, ifname, ok := strings.Cut(uplink, "/")
		if !ok {
			return fmt.Errorf("-uplink %q: want NS/IFACE", uplink)
		}
		p, err := afpacket.Open(afpacket.Config{Interface: ifname, Namespace: ns})
		if err != nil {
			return err
		}
		if err := sw.AddPort("uplink", p, l2.PortConfig{}); err != nil {
			return err
		}
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready") // the bench script waits for this line
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
