package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"

	"github.com/sedd-go/sedd/sdk"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "run the golden inputs of a model through ONNX Runtime and compare with PyTorch",
		ArgsUsage: "[DIR]",
		Description: "Prints the error of every golden case and the largest one. Exits 1 when a case is past the\n" +
			"tolerance: max|ONNX − PyTorch| ≤ tol · max(1, max|PyTorch|), tol from sedd.json or 1e-4.\n" +
			"(An autoregressive evaluator, sedd.json kind causal-lm, is verified by sedd-bench verify.)",
		Flags: append([]cli.Flag{
			&cli.Float64Flag{Name: "tolerance", Usage: "relative tolerance", DefaultText: "sedd.json's, else 1e-4"},
			&cli.BoolFlag{Name: "json", Usage: "write the report as one JSON object"},
		}, modelFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 1 {
				return usagef("verify takes at most one model directory, got %d arguments%s", c.Args().Len(), cmdline.FlagsAfterArgs(c))
			}
			tol := c.Float64("tolerance")
			if c.IsSet("tolerance") && !(tol > 0) {
				return usagef("--tolerance must be > 0, got %g", tol)
			}
			opts, err := modelOptions(c)
			if err != nil {
				return err
			}
			m, err := openModel(c, c.Args().First(), opts)
			if err != nil {
				return err
			}
			defer m.Close()
			rep, verr := m.Verify(c.Context, sdk.VerifyRequest{Tolerance: tol})
			if rep == nil {
				return verr
			}
			stdout, _ := streams(c)
			dir := m.Info().Dir
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(verifyJSON{Dir: dir, Kind: "sedd", VerifyReport: rep}); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "case\tbatch×length\tlog_score err\tlse err\tnonzero at input\t")
				for _, k := range rep.Cases {
					fmt.Fprintf(tw, "%s\t%d×%d\t%.3g\t%.3g\t%d\t%s\n", k.Name, k.Batch, k.Length,
						k.RelLogScore, k.RelLSE, k.NonZeroAtInput, okWord(k.OK))
				}
				tw.Flush()
				fmt.Fprintf(stdout, "max relative error %.3g, tolerance %.3g: %s (%s)\n", rep.MaxRel, rep.Tolerance, okWord(rep.OK), dir)
			}
			return verr
		},
	}
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

// verifyJSON is the output of `sedd verify --json`.
type verifyJSON struct {
	Dir  string `json:"dir"`
	Kind string `json:"kind"`
	*sdk.VerifyReport
}
