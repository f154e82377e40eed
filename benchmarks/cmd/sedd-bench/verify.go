package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

// verifyEvaluatorCommand checks an autoregressive evaluator (sedd.json kind
// causal-lm) against its golden logits, as sedd verify checks a SEDD model.
func verifyEvaluatorCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "run the golden inputs of an evaluator through ONNX Runtime and compare with PyTorch",
		ArgsUsage: "[DIR]",
		Description: "DIR is an autoregressive evaluator (sedd.json kind causal-lm), by default the built-in twin.\n" +
			"Exits 1 when a case is past the tolerance: max|ONNX − PyTorch| ≤ tol · max(1, max|PyTorch|).",
		Flags: append([]cli.Flag{
			&cli.Float64Flag{Name: "tolerance", Usage: "relative tolerance", DefaultText: "sedd.json's, else 1e-4"},
			&cli.BoolFlag{Name: "json", Usage: "write the report as one JSON object"},
		}, cmdline.ModelFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 1 {
				return usagef("verify takes at most one evaluator directory, got %d arguments%s", c.Args().Len(), cmdline.FlagsAfterArgs(c))
			}
			tol := c.Float64("tolerance")
			if c.IsSet("tolerance") && !(tol > 0) {
				return usagef("--tolerance must be > 0, got %g", tol)
			}
			opts, err := cmdline.ModelOptions(c)
			if err != nil {
				return err
			}
			dir := c.Args().First()
			var ev *perplexity.Evaluator
			if dir == "" {
				fsys, name := models.Evaluator()
				dir = name
				ev, err = perplexity.OpenFS(fsys, name, opts...)
			} else {
				ev, err = perplexity.Open(dir, opts...)
			}
			if err != nil {
				return cmdline.OpenError{Dir: dir, Err: err}
			}
			defer ev.Close()
			rep, verr := ev.Verify(c.Context, sdk.VerifyRequest{Tolerance: tol})
			if rep == nil {
				return verr
			}
			stdout, _ := cmdline.Streams(c)
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				out := struct {
					Dir  string `json:"dir"`
					Kind string `json:"kind"`
					*perplexity.VerifyReport
				}{dir, "causal-lm", rep}
				if err := enc.Encode(out); err != nil {
					return err
				}
				return verr
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "case\tbatch×length\tlogits err\t")
			for _, k := range rep.Cases {
				ok := "ok"
				if !k.OK {
					ok = "FAIL"
				}
				fmt.Fprintf(tw, "%s\t%d×%d\t%.3g\t%s\n", k.Name, k.Batch, k.Length, k.Rel, ok)
			}
			tw.Flush()
			ok := "ok"
			if !rep.OK {
				ok = "FAIL"
			}
			fmt.Fprintf(stdout, "max relative error %.3g, tolerance %.3g: %s (%s, evaluator)\n", rep.MaxRel, rep.Tolerance, ok, dir)
			return verr
		},
	}
}
