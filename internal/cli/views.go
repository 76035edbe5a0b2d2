package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/config"
)

func (a *app) fdbCmd() *cobra.Command {
	var q client.FDBQuery
	var limit int
	var host string
	c := &cobra.Command{Use: "fdb SWITCH", Short: "Show a switch's MAC table", Args: nArgs(1, "the switch's name"),
		Long: "Show a switch's MAC table, sorted by VLAN and MAC. It is read from the daemon page by page\n" +
			"and each page printed as it arrives, so that a table of any size is shown in little memory.",
		RunE: func(c *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit %d: want a number of rows, or 0 for all", limit)
			}
			if q.Limit < 1 || q.Limit > api.FDBPageMax {
				return usagef("--page-size %d: want 1 to %d rows", q.Limit, api.FDBPageMax)
			}
			if limit > 0 {
				q.Limit = min(q.Limit, limit)
			}
			var out fdbPrinter = &fdbTable{w: a.out, portW: len("PORT")}
			if a.output == "json" {
				out = &fdbJSON{w: a.out}
			}
			left := limit
			err := a.client().OnHost(host).WalkFDB(args[0], q, func(rows []api.FDBEntry) bool {
				if limit > 0 {
					rows = rows[:min(len(rows), left)]
					left -= len(rows)
				}
				out.page(rows)
				return limit == 0 || left > 0
			})
			if err != nil {
				return err
			}
			out.end()
			return nil
		}}
	f := c.Flags()
	f.StringVar(&q.VLAN, "vlan", "", "only this VLAN's entries (0: the static entries that hold on every VLAN)")
	f.StringVar(&q.MAC, "mac", "", "only this MAC address's entries")
	f.StringVar(&q.Port, "port", "", "only this port's entries (e.g. web/eth0, uplink, host)")
	f.IntVar(&limit, "limit", 0, "stop after this many rows (0: all)")
	f.IntVar(&q.Limit, "page-size", api.FDBPageMax, fmt.Sprintf("rows per request to the daemon (1 to %d)", api.FDBPageMax))
	f.StringVar(&host, "host", "", "in a cluster: the table of the switch on this host (read from that host)")
	return c
}

// An fdbPrinter prints a MAC table as its pages arrive: page is called at
// least once (the first page may be empty), then end.
type fdbPrinter interface {
	page(rows []api.FDBEntry)
	end()
}

// fdbTable prints the columns VLAN, MAC, PORT, TYPE and AGE, two spaces
// apart. The PORT column is as wide as the longest name seen so far: a
// page with a longer one than its predecessors widens it from there on.
type fdbTable struct {
	w       io.Writer
	portW   int
	started bool
}

func (t *fdbTable) page(rows []api.FDBEntry) {
	for _, r := range rows {
		t.portW = max(t.portW, len(r.Port))
	}
	if !t.started {
		t.started = true
		fmt.Fprintf(t.w, "%-4s  %-17s  %-*s  %-7s  %s\n", "VLAN", "MAC", t.portW, "PORT", "TYPE", "AGE")
	}
	for _, r := range rows {
		vlan, kind, age := fmt.Sprint(r.VLAN), "learned", fmt.Sprintf("%.0fs", r.AgeSeconds)
		if r.VLAN == 0 {
			vlan = "any"
		}
		if r.Static {
			kind, age = "static", "-"
		}
		fmt.Fprintf(t.w, "%-4s  %-17s  %-*s  %-7s  %s\n", vlan, r.MAC, t.portW, r.Port, kind, age)
	}
}

func (t *fdbTable) end() {}

// fdbJSON prints the rows as one JSON array, indented as a.json does,
// without holding more than a page.
type fdbJSON struct {
	w io.Writer
	n int
}

func (j *fdbJSON) page(rows []api.FDBEntry) {
	for _, r := range rows {
		b, _ := json.MarshalIndent(r, "  ", "  ")
		sep := ",\n  "
		if j.n == 0 {
			sep = "[\n  "
		}
		fmt.Fprintf(j.w, "%s%s", sep, b)
		j.n++
	}
}

func (j *fdbJSON) end() {
	if j.n == 0 {
		fmt.Fprintln(j.w, "[]")
		return
	}
	fmt.Fprint(j.w, "\n]\n")
}

func (a *app) statsCmd() *cobra.Command {
	var host string
	cmd := &cobra.Command{Use: "stats [SWITCH] [--host NAME]", Short: "Show port counters", Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sw := ""
			if len(args) == 1 {
				sw = args[0]
			}
			switches, err := a.client().OnHost(host).SwitchStats(sw)
			if err != nil {
				return err
			}
			if a.output == "json" { // the port rows, as before switch counters existed
				rows := []api.PortStats{}
				for _, s := range switches {
					rows = append(rows, s.Ports...)
				}
				return a.json(rows)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SWITCH\tPORT\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tFLOODS\tDROPS\tBACKEND")
			for _, s := range switches {
				for _, r := range s.Ports {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Switch, r.Port, r.RxPackets, r.RxBytes, r.TxPackets, r.TxBytes,
						r.Floods, drops(r.Drops), backend(r.Backend))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, s := range switches {
				if s.SuppressedMoves > 0 {
					fmt.Fprintf(a.out, "switch %s: %d station moves not reported (rate limit)\n", s.Switch, s.SuppressedMoves)
				}
			}
			return nil
		}}
	cmd.Flags().StringVar(&host, "host", "", "in a cluster: the counters of this host (read from that host)")
	return cmd
}

func drops(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

// backend shows a port backend's non-zero counters, "-" if none.
func backend(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func (a *app) topologyCmd() *cobra.Command {
	var host string
	cmd := &cobra.Command{Use: "topology [--host NAME]", Short: "Show switches with their uplink, host adapter and adapters (in a cluster: of every host, or one)",
		Args: nArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, _ []string) error {
			t, err := a.client().Topology(host)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(t)
			}
			fmt.Fprint(a.out, RenderTopology(t))
			return nil
		}}
	cmd.Flags().StringVar(&host, "host", "", "in a cluster: only what is on this host")
	return cmd
}

// RenderTopology draws the switch tree as text.
func RenderTopology(t api.Topology) string {
	var b strings.Builder
	for _, h := range t.Hosts {
		state := "down"
		if h.Up {
			state = "up"
		}
		if h.Name == t.Self {
			state += ", this host"
		}
		fmt.Fprintf(&b, "host %s (VTEP %s, %s)\n", h.Name, h.VTEP, state)
	}
	if len(t.Switches) == 0 {
		b.WriteString("no switches\n")
	}
	for _, s := range t.Switches {
		state := ""
		switch {
		case s.Span && s.SpanHosts == "":
			state = fmt.Sprintf(", spans every host, VXLAN VNI %d", s.VNI)
		case s.Span:
			state = fmt.Sprintf(", spans %s, VXLAN VNI %d", s.SpanHosts, s.VNI)
		case s.Host != "":
			state = ", on host " + s.Host
		}
		if s.MTU > 0 {
			state += fmt.Sprintf(", adapters' MTU %d", s.MTU)
		}
		if s.Datapath == string(config.Kernel) { // the core is the rest (and auto where no host says)
			state += ", kernel data path"
		}
		if !s.Running && (s.Host == t.Self || s.Span) {
			state += ", not running"
		}
		fmt.Fprintf(&b, "%s (%s, default VLAN %d%s)\n", s.Name, s.Type, s.DefaultVLAN, state)
		var lines []string
		if s.Uplink != nil {
			lines = append(lines, fmt.Sprintf("uplink %s  [%s]", s.Uplink.Name, s.Uplink.VLAN))
		}
		if s.HostAdapter != nil {
			lines = append(lines, fmt.Sprintf("host adapter %s  [%s]", s.HostAdapter.Name, s.HostAdapter.VLAN))
		}
		for _, p := range s.Adapters {
			l := fmt.Sprintf("%s  %s  %s  %s  [%s]", p.Name, p.MAC, p.Type, p.Attachment, p.VLAN)
			if p.Host != "" {
				l += "  on " + p.Host
			}
			lines = append(lines, l)
		}
		for i, l := range lines {
			branch := "├── "
			if i == len(lines)-1 {
				branch = "└── "
			}
			b.WriteString(branch + l + "\n")
		}
	}
	return b.String()
}
