package main

import "github.com/urfave/cli/v2"

// benchCommand groups the measurements of sampling quality and cost. Each
// subcommand lives in its own file (bench_*.go); add new ones to the list.
func benchCommand() *cli.Command {
	subs := []*cli.Command{
		benchSweepCommand(),
		benchSpeedCommand(),
		benchPlotCommand(),
	}
	return &cli.Command{
		Name:        "bench",
		Usage:       "measure sampling: quality and cost against the number of steps",
		Subcommands: subs,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown bench command %q: use %s", c.Args().First(), subcommandNames(subs))
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

// subcommandNames lists the names of cmds for a message: "a, b or c".
func subcommandNames(cmds []*cli.Command) string {
	s := ""
	for i, c := range cmds {
		switch {
		case i == 0:
		case i == len(cmds)-1:
			s += " or "
		default:
			s += ", "
		}
		s += c.Name
	}
	return s
}
