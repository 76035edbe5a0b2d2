// Package cli is vswitchctl: Hyper-V's networking cmdlets (New-VMSwitch,
// Add-VMNetworkAdapter, Set-VMNetworkAdapterVlan, Set-VMHost -MacAddress...)
// as Linux-style subcommands that talk to vswitchd's API. Output goes to
// the writers it is given, as tables for people or JSON (-o json) for
// scripts, and the exit code says what happened. It never touches frames
// or devices itself.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/client"
)

// Exit codes.
const (
	ExitOK          = 0 // done
	ExitFailed      = 1 // the daemon refused or failed (invalid input, in use, a host step failed)
	ExitUsage       = 2 // bad command line
	ExitNotFound    = 3 // no such switch, VM or adapter
	ExitUnreachable = 4 // no daemon on the socket, or the cluster's etcd cannot be reached
)

// usageError is a problem with the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

type app struct {
	out, errOut io.Writer
	socket      string
	output      string
}

// Main runs vswitchctl with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr}
	root := &cobra.Command{
		Use:           "vswitchctl",
		Short:         "Manage vswitch: Hyper-V-style virtual switches for Linux",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "table" && a.output != "json" {
				return usagef("-o %q: want table or json", a.output)
			}
			return nil
		},
	}
	root.Args = unknownSub
	root.PersistentFlags().StringVar(&a.socket, "socket", api.SocketPath, "vswitchd's API socket")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.switchCmd(), a.vmCmd(), a.adapterCmd(), a.hostCmd(), a.fdbCmd(), a.statsCmd(), a.topologyCmd(), a.consoleCmd())
	root.SetArgs(fixUntagged(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	return a.report(root.Execute())
}

// fixUntagged lets "--untagged" stand alone (the untagged mode) as well as
// take a set ("--hybrid ... --untagged 10,20").
func fixUntagged(args []string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if a == "--untagged" && (i+1 == len(out) || strings.HasPrefix(out[i+1], "-")) {
			out[i] = "--untagged="
		}
	}
	return out
}

func (a *app) client() *client.Client { return client.New(a.socket) }

// report prints err for a person and maps it to an exit code.
func (a *app) report(err error) int {
	if err == nil {
		return ExitOK
	}
	var ae *api.Error
	var ue usageError
	switch {
	case errors.As(err, &ae):
		switch {
		case len(ae.Problems) == 0:
			fmt.Fprintf(a.errOut, "error: %s\n", ae.Message)
		case ae.Read:
			fmt.Fprintln(a.errOut, "error: invalid request:")
		default:
			fmt.Fprintln(a.errOut, "error: refused, nothing was changed:")
		}
		for _, p := range ae.Problems {
			fmt.Fprintf(a.errOut, "  %s %q: %s\n", p.Field, p.Value, p.Allowed)
		}
		if ae.Step != "" {
			fmt.Fprintf(a.errOut, "  failed step: %s\n", ae.Step)
		}
		if ae.Code == api.CodeNotFound {
			return ExitNotFound
		}
		if ae.Code == api.CodeUnavailable {
			return ExitUnreachable
		}
		return ExitFailed
	case errors.Is(err, client.ErrUnreachable) && errors.Is(err, os.ErrPermission):
		fmt.Fprintf(a.errOut, "error: permission denied on %s: the API socket is for root (run vswitchctl as root, or start vswitchd with a wider --socket-mode)\n", a.socket)
		return ExitUnreachable
	case errors.Is(err, client.ErrUnreachable):
		fmt.Fprintf(a.errOut, "error: %v\n  is vswitchd running? (--socket %s)\n", err, a.socket)
		return ExitUnreachable
	case errors.As(err, &ue):
		fmt.Fprintf(a.errOut, "error: %v\n", err)
		return ExitUsage
	case errors.Is(err, errBlocked):
		return ExitFailed
	}
	fmt.Fprintf(a.errOut, "error: %v\n", err)
	return ExitFailed
}

// result prints the answer to a write.
func (a *app) result(r api.Result, err error) error {
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.json(r)
	}
	if len(r.Changes) == 0 {
		fmt.Fprintln(a.out, "no change")
	}
	for _, c := range r.Changes {
		fmt.Fprintln(a.out, c)
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(a.errOut, "warning:", w)
	}
	return nil
}

func (a *app) json(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// group makes a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: unknownSub, RunE: func(cmd *cobra.Command, _ []string) error {
		return usagef("%s needs a subcommand:\n%s", cmd.CommandPath(), cmd.UsageString())
	}}
	c.AddCommand(subs...)
	return c
}

func unknownSub(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %s", args[0], cmd.CommandPath())
	}
	return nil
}

// args checks the positional arguments, as a usage error.
func nArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

// adapterID splits "vm/nic".
func adapterID(s string) (vm, name string, err error) {
	vm, name, ok := strings.Cut(s, "/")
	if !ok || vm == "" || name == "" || strings.Contains(name, "/") {
		return "", "", usagef("adapter %q: want VM/NAME, e.g. web/eth0", s)
	}
	return vm, name, nil
}
