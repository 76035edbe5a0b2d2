// Command vswitch-pair is the bench scripts' vswitch: it joins existing
// network namespaces through one switch, giving each a TAP eth0 on an
// untagged port, and optionally binds an uplink (an interface in a
// namespace, through AF_PACKET) as an external switch does; it runs until
// interrupted, then deletes the TAPs. It is the same data path as vswitchd
// (l2 with the tap and afpacket ports, read by poll's forwarding threads)
// without the management plane, so that the bench measures forwarding alone.
//
// With -floor there is no switch: each frame read from one TAP is written
// to the other as it was read, virtio-net header and all, on the same
// forwarding threads and with the same port code: what vswitch would reach
// if switching cost nothing. The difference to the normal mode is what the
// switching itself costs.
//
//	vswitch-pair -ns benchA[,benchB] [-uplink NS/IFACE] [-no-offloads] [-threads N] [-busy-poll D] [-goroutines | -floor] [-cpuprofile FILE]
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
	floor := flag.Bool("floor", false, "no switch: copy frames between the two TAPs as read (vswitch's port code with switching that costs nothing)")
	flag.Parse()
	var err error
	if *floor && (*uplink != "" || *goroutines) {
		err = fmt.Errorf("-floor joins two TAPs on the forwarding threads: not with -uplink or -goroutines")
	} else if *floor {
		err = runFloor(strings.Split(*nss, ","), *plain, *cpu, fwd)
	} else {
		err = run(strings.Split(*nss, ","), *uplink, *plain, *cpu, fwd, *goroutines)
	}
	if err != nil {
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
	return serve(cpuprofile)
}

// serve profiles if asked, tells the bench script it is ready and waits
// for SIGINT or SIGTERM.
func serve(cpuprofile string) error {
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
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM) // before "ready": the script may stop us at once
	fmt.Println("ready")                                // the bench script waits for this line
	<-sig
	return nil
}

// runFloor joins two namespaces' TAPs with no switch between them: each
// TAP's forwarding-thread callback reads a batch (ReadNow, as the switch's
// reader) and writes it to the other TAP (Write, as the switch's writer)
// untouched, the virtio-net header the device put in front included.
func runFloor(nss []string, plain bool, cpuprofile string, fwd vswitchd.Options) error {
	if len(nss) != 2 {
		return fmt.Errorf("-floor needs exactly two namespace names in -ns; got %q", strings.Join(nss, ","))
	}
	var taps [2]*tap.Port
	defer func() { // after the pool's Close: no thread reads a deleted TAP
		for _, p := range taps {
			if p != nil {
				p.Delete()
			}
		}
	}()
	pool, err := poll.New(fwd.PollConfig())
	if err != nil {
		return err
	}
	defer pool.Close()
	for i, ns := range nss {
		if taps[i], err = tap.Open(tap.Config{Namespace: ns, NoOffloads: plain}); err != nil {
			return err
		}
	}
	for i, src := range taps {
		dst := taps[1-i]
		batch, size := l2.ReadGeometry(src, l2.DefaultMaxFrameSize) // as the switch reads it
		bufs, out := make([][]byte, batch), make([][]byte, batch)
		sizes, offsets := make([]int, batch), make([]int, batch)
		for j := range bufs {
			bufs[j], offsets[j] = make([]byte, size), l2.Headroom
		}
		ready := func() bool {
			n, err := src.ReadNow(bufs, sizes, l2.Headroom)
			if err != nil {
				slog.Error("floor: read", "err", err)
				return false
			}
			for j := range n {
				out[j] = bufs[j][:l2.Headroom+sizes[j]]
			}
			dst.Write(out[:n], offsets[:n]) // a full queue drops the rest, as the switch's writer does
			return true
		}
		if _, err := pool.Watch(src.PollFD(), ready); err != nil {
			return err
		}
	}
	return serve(cpuprofile)
}
