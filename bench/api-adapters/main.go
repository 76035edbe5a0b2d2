// Command api-adapters is bench/scale's API figure: against a running
// vswitchd it makes a private switch and VMs, then times adding adapters
// one API call at a time (each a TAP that QEMU could open, with a MAC from
// the pool: the daemon creates the device and attaches a port), checks that
// every one is a port of the switch, and removes what it made.
//
//	api-adapters -socket PATH [-n 1000] [-vms 100]
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/config"
)

func main() {
	sock := flag.String("socket", "", "vswitchd's API socket")
	n := flag.Int("n", 1000, "adapters to add")
	vms := flag.Int("vms", 100, "VMs to spread them over")
	flag.Parse()
	if err := run(client.New(*sock), *n, *vms); err != nil {
		fmt.Fprintln(os.Stderr, "api-adapters:", err)
		os.Exit(1)
	}
}

func run(c *client.Client, n, vms int) error {
	const sw = "scale"
	if _, err := c.AddSwitch(config.Switch{Name: sw, Type: config.Private}); err != nil {
		return err
	}
	for v := range vms {
		if _, err := c.AddVM(config.VM{Name: fmt.Sprint("vm", v)}); err != nil {
			return err
		}
	}
	start := time.Now()
	for i := range n {
		a := config.Adapter{VM: fmt.Sprint("vm", i%vms), Name: fmt.Sprint("nic", i/vms), Switch: sw, DynamicMAC: true,
			Attachment: config.Attachment{Kind: config.AttachTAP, Device: fmt.Sprint("vsc", i)}}
		if _, err := c.AddAdapter(a); err != nil {
			return fmt.Errorf("adapter %d: %w", i, err)
		}
	}
	took := time.Since(start)
	stats, err := c.Stats(sw)
	if err != nil {
		return err
	}
	if len(stats) != n {
		return fmt.Errorf("switch has %d ports after adding %d adapters", len(stats), n)
	}
	fmt.Printf("added %d adapters through the API in %.2f s (%.1f ms each); all %d are ports of the switch\n",
		n, took.Seconds(), took.Seconds()*1000/float64(n), len(stats))
	fmt.Printf("api_seconds=%.2f\n", took.Seconds())
	for v := range vms {
		if _, err := c.RemoveVM(fmt.Sprint("vm", v), true); err != nil {
			return err
		}
	}
	_, err = c.RemoveSwitch(sw, true)
	return err
}
