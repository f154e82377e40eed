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
		Description: "Checks model.onnx and every variant sedd.json lists (fp32-opt, int8; with --precision only\n" +
			"that one), each against its own tolerance: max|ONNX − PyTorch| ≤ tol · max(1, max|PyTorch|), tol\n" +
			"from sedd.json (a variant records its own and how it was derived) or 1e-4. Prints the error of\n" +
			"every golden case and the largest one; exits 1 when any graph has a case past its tolerance.\n" +
			"The files themselves are checked: the optimized-graph cache is not used.\n" +
			"(An autoregressive evaluator, sedd.json kind causal-lm, is verified by sedd-bench verify.)",
		Flags: append([]cli.Flag{
			&cli.Float64Flag{Name: "tolerance", Usage: "relative tolerance for every graph", DefaultText: "each graph's own from sedd.json, else 1e-4"},
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
			opts = append(opts, sdk.WithCacheDir(""))
			graphs := []string{c.String("precision")}
			if !c.IsSet("precision") {
				graphs = []string{"reference"}
			}
			var reports []*sdk.VerifyReport
			var failed error
			dir := ""
			for i := 0; i < len(graphs); i++ {
				m, err := openModel(c, c.Args().First(), append(opts, sdk.WithPrecision(graphs[i])))
				if err != nil {
					return err
				}
				info := m.Info()
				if i == 0 && !c.IsSet("precision") {
					for _, v := range info.Variants[1:] {
						graphs = append(graphs, v.Name)
					}
				}
				dir = info.Dir
				rep, verr := m.Verify(c.Context, sdk.VerifyRequest{Tolerance: tol})
				m.Close()
				if rep == nil {
					return verr
				}
				reports = append(reports, rep)
				if verr != nil && failed == nil {
					failed = verr
				}
			}
			stdout, _ := streams(c)
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				out := verifyJSON{Dir: dir, Kind: "sedd", VerifyReport: reports[0], Variants: reports[1:], AllOK: failed == nil}
				if err := enc.Encode(out); err != nil {
					return err
				}
				return failed
			}
			for i, rep := range reports {
				if i > 0 {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "%s (%s)\n", rep.Variant, rep.File)
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "case\tbatch×length\thead rows\tlog_score err\tlse err\tnonzero at input\t")
				for _, k := range rep.Cases {
					rows := "all"
					if k.Rows > 0 {
						rows = fmt.Sprintf("all, %d", k.Rows)
					}
					fmt.Fprintf(tw, "%s\t%d×%d\t%s\t%.3g\t%.3g\t%d\t%s\n", k.Name, k.Batch, k.Length, rows,
						k.RelLogScore, k.RelLSE, k.NonZeroAtInput, okWord(k.OK))
				}
				tw.Flush()
				fmt.Fprintf(stdout, "max relative error %.3g, tolerance %.3g: %s (%s, %s)\n", rep.MaxRel, rep.Tolerance, okWord(rep.OK), rep.Variant, dir)
			}
			if len(reports) > 1 {
				fmt.Fprintf(stdout, "\n%d graphs: %s\n", len(reports), okWord(failed == nil))
			}
			return failed
		},
	}
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

// verifyJSON is the output of `sedd verify --json`: the first graph's
// report (model.onnx's, unless --precision chose another) at the top level,
// the variants' reports after it.
type verifyJSON struct {
	Dir  string `json:"dir"`
	Kind string `json:"kind"`
	*sdk.VerifyReport
	Variants []*sdk.VerifyReport `json:"variants"`
	AllOK    bool                `json:"all_ok"`
}
