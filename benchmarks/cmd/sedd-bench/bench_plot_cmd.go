package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
)

// benchPlotCommand writes the CSV and the plots of a saved sweep, for
// example one that was interrupted (its sweep.json keeps the finished rows)
// or one whose plots were drawn by an older sedd-bench.
func benchPlotCommand() *cli.Command {
	return &cli.Command{
		Name:      "plot",
		Usage:     "write sweep.csv, ppl.png, entropy.png and time.png from a sweep.json written by sweep",
		ArgsUsage: "SWEEP.json",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "`DIR` to write the plots to", DefaultText: "the directory of SWEEP.json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("plot needs exactly one SWEEP.json (written by sedd-bench sweep --out DIR), got %d arguments", c.NArg())
			}
			path := c.Args().First()
			raw, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("reading the sweep: %w", err)
			}
			var rep sweepReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				return fmt.Errorf("%s is not a sweep.json written by sedd-bench sweep: %w", path, err)
			}
			out := c.String("out")
			if out == "" {
				out = filepath.Dir(path)
			} else if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			if err := writeDerived(out, &rep); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			_, stderr := cmdline.Streams(c)
			note := ""
			if !rep.Complete {
				note = " (the sweep is incomplete: only its finished rows are drawn)"
			}
			plots := "ppl.png, entropy.png and time.png"
			if rep.Judge != "" {
				plots = "ppl.png, judge-ppl.png, entropy.png and time.png"
			}
			fmt.Fprintf(stderr, "sedd-bench: wrote sweep.csv, %s to %s%s\n", plots, out, note)
			return nil
		},
	}
}
