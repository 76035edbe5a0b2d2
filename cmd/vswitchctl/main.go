// Command vswitchctl manages vswitch through vswitchd's API: switches,
// VMs, network adapters, VLANs, the host's MAC pool, and views of the MAC
// tables, counters and topology. See `vswitchctl --help`.
package main

import (
	"os"

	"github.com/vswitch/vswitch/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
