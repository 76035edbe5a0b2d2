// Command cluster-converge is bench/cluster's convergence figure: against
// the vswitchd of every host of a running cluster it makes a spanning
// switch and VMs spread over the hosts, adds adapters (each a TAP that
// QEMU could open: the VM's host makes the device and attaches a port),
// one writer per host at once (one adapter per write, or -batch of them
// per write: vswitchctl adapter import), and times until every host
// reports every adapter it owns up; then removes what it made.
//
//	cluster-converge -sockets h1.sock,h2.sock,h3.sock -hosts h1,h2,h3 [-n 1000] [-vms 99] [-batch 1]
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/config"
)

func main() {
	socks := flag.String("sockets", "", "the hosts' API sockets, comma-separated")
	hosts := flag.String("hosts", "", "the hosts' names, in the same order")
	n := flag.Int("n", 1000, "adapters to add")
	vms := flag.Int("vms", 99, "VMs to spread them over (round robin over the hosts)")
	writers := flag.Int("writers", 0, "write through this many of the hosts at once (each the adapters of its own VMs; 1: all through the first host); 0: all")
	datapath := flag.String("datapath", "", "the switch's data path: auto (the default: the kernel data path where a host has it), kernel or userspace")
	batch := flag.Int("batch", 1, "adapters per write (at most 127: etcd's --max-txn-ops)")
	flag.Parse()
	var cs []*client.Client
	for _, s := range strings.Split(*socks, ",") {
		cs = append(cs, client.New(s))
	}
	if err := run(cs, strings.Split(*hosts, ","), *n, *vms, *writers, max(*batch, 1), config.Datapath(*datapath)); err != nil {
		fmt.Fprintln(os.Stderr, "cluster-converge:", err)
		os.Exit(1)
	}
}

func run(cs []*client.Client, hosts []string, n, vms, writers, batch int, datapath config.Datapath) error {
	if writers <= 0 || writers > len(cs) {
		writers = len(cs)
	}
	if len(cs) != len(hosts) {
		return fmt.Errorf("%d sockets for %d hosts", len(cs), len(hosts))
	}
	const sw = "conv"
	if _, err := cs[0].AddSwitch(config.Switch{Name: sw, Type: config.Private, Span: true, Datapath: datapath}); err != nil {
		return err
	}
	for v := range vms {
		if _, err := cs[0].AddVM(config.VM{Name: fmt.Sprint("cv", v), Host: hosts[v%len(hosts)]}); err != nil {
			return err
		}
	}
	defer func() {
		for v := range vms {
			cs[0].RemoveVM(fmt.Sprint("cv", v), true)
		}
		cs[0].RemoveSwitch(sw, true)
	}()
	start := time.Now()
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers { // writer w adds the adapters of the VMs on host w (and those of the hosts without a writer), through host w
		wg.Add(1)
		go func() {
			defer wg.Done()
			var pending []config.Adapter
			flush := func() error {
				var err error
				if len(pending) == 1 {
					_, err = cs[w].AddAdapter(pending[0])
				} else if len(pending) > 1 {
					_, err = cs[w].AddAdapters(pending)
				}
				if err != nil {
					err = fmt.Errorf("adapters %s..%s through %s: %w", pending[0].ID(), pending[len(pending)-1].ID(), hosts[w], err)
				}
				pending = pending[:0]
				return err
			}
			for i := range n {
				v := i % vms
				if v%len(cs)%writers != w {
					continue
				}
				pending = append(pending, config.Adapter{VM: fmt.Sprint("cv", v), Name: fmt.Sprint("nic", i/vms), Switch: sw, DynamicMAC: true,
					Attachment: config.Attachment{Kind: config.AttachTAP, Device: fmt.Sprint("vcv", i)}})
				if len(pending) == batch {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	written := time.Since(start)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		up, seen, notUp := 0, 0, []string{}
		for h, c := range cs {
			states, err := c.PortStates()
			if err != nil {
				return err
			}
			for _, ps := range states {
				if ps.Switch != sw || ps.Port == "tunnel" {
					continue
				}
				seen++
				if ps.State == api.PortUp {
					up++
				} else if len(notUp) < 10 {
					notUp = append(notUp, fmt.Sprintf("%s on %s: %s %s", ps.Port, hosts[h], ps.State, ps.Reason))
				}
			}
		}
		if up == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d adapters up after 5 minutes (%d have a port); not up: %s", up, n, seen, strings.Join(notUp, "; "))
		}
	}
	took := time.Since(start)
	fmt.Printf("%d adapters over %d hosts, written through %d of them at once, %d per write: written in %.2f s, all up on their hosts in %.2f s\n",
		n, len(cs), writers, batch, written.Seconds(), took.Seconds())
	fmt.Printf("converge_seconds=%.2f\n", took.Seconds())
	return nil
}
