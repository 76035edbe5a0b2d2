// Command vswitch-pair is the bench scripts' vswitch: it joins existing
// network namespaces through one switch, giving each a TAP eth0 on an
// untagged port, and runs until interrupted; then it deletes the TAPs.
// It stands in until vswitchd and vswitchctl can build the same topology.
//
//	vswitch-pair -ns benchA,benchB [-cpuprofile FILE]
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
	"github.com/vswitch/vswitch/internal/port/tap"
)

func main() {
	nss := flag.String("ns", "", "comma-separated network namespace names (ip netns) to join")
	cpu := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if err := run(strings.Split(*nss, ","), *cpu); err != nil {
		fmt.Fprintln(os.Stderr, "vswitch-pair:", err)
		os.Exit(1)
	}
}

func run(nss []string, cpuprofile string) error {
	if len(nss) < 2 || nss[0] == "" {
		return fmt.Errorf("-ns needs at least two namespace names, got %q", strings.Join(nss, ","))
	}
	sw, err := l2.New(l2.Options{Name: "bench", Logger: slog.Default()})
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
		p, err := tap.Open(tap.Config{Namespace: ns})
		if err != nil {
			return err
		}
		taps = append(taps, p)
		if err := sw.AddPort(ns, p, l2.PortConfig{}); err != nil {
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
