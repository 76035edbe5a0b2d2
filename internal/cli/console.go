package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) consoleCmd() *cobra.Command {
	var rotate bool
	c := &cobra.Command{Use: "console [--rotate]", Short: "Print a login URL for the web console (a one-time code, good for 5 minutes); --rotate replaces the token first",
		Args: nArgs(0, "no arguments"), RunE: func(c *cobra.Command, _ []string) error {
			con, err := a.client().Console(rotate)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(con)
			}
			fmt.Fprintln(a.out, con.URL)
			if rotate {
				fmt.Fprintln(a.errOut, "the token was replaced: browsers logged in with the old one must log in with this URL")
			}
			return nil
		}}
	c.Flags().BoolVar(&rotate, "rotate", false, "replace the token (logs every browser out)")
	return c
}
