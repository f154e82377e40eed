package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/manifest"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "run the golden inputs of a model through ONNX Runtime and compare with PyTorch",
		ArgsUsage: "[DIR]",
		Description: "Prints the error of every golden case and the largest one. Exits 1 when a case is past the\n" +
			"tolerance: max|ONNX − PyTorch| ≤ tol · max(1, max|PyTorch|), tol from sedd.json or 1e-4.\n" +
			"DIR may also be an evaluator (sedd.json kind causal-lm, such as the autoregressive twin): its\n" +
			"golden cases hold next-token logits.",
		Flags: append([]cli.Flag{
			&cli.Float64Flag{Name: "tolerance", Usage: "relative tolerance", DefaultText: "sedd.json's, else 1e-4"},
			&cli.BoolFlag{Name: "json", Usage: "write the report as one JSON object"},
		}, modelFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 1 {
				return usagef("verify takes at most one model directory, got %d arguments%s", c.Args().Len(), flagsAfterArgs(c))
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
			if errors.Is(err, manifest.ErrKind) {
				// not a score model: an evaluator directory (kind causal-lm) verifies its logits
				return verifyEvaluator(c, c.Args().First(), opts, tol)
			}
			if err != nil {
				return err
			}
			defer m.Close()
			rep, verr := m.Verify(c.Context, tol)
			if rep == nil {
				return verr
			}
			stdout, _ := streams(c)
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(verifyJSON(m.Dir(), rep)); err != nil {
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
				fmt.Fprintf(stdout, "max relative error %.3g, tolerance %.3g: %s (%s)\n", rep.MaxRel, rep.Tolerance, okWord(rep.OK), m.Dir())
			}
			return verifyError(verr)
		},
	}
}

func verifyError(verr error) error {
	if errors.Is(verr, sdk.ErrVerify) {
		return fmt.Errorf("%w; export the model again, or check that the ONNX Runtime version matches the one it was exported for", verr)
	}
	return verr
}

// verifyEvaluator is verify for an evaluator directory (sedd.json kind
// causal-lm): the golden cases hold next-token logits instead of scores.
func verifyEvaluator(c *cli.Context, dir string, opts []sdk.Option, tol float64) error {
	dir, err := modelDir(c, dir)
	if err != nil {
		return err
	}
	ev, err := sdk.OpenEvaluator(dir, opts...)
	if err != nil {
		return openError{dir: dir, err: err}
	}
	defer ev.Close()
	rep, verr := ev.Verify(c.Context, tol)
	if rep == nil {
		return verifyError(verr)
	}
	stdout, _ := streams(c)
	if c.Bool("json") {
		out := verifyReportJSON{Dir: ev.Dir(), Kind: manifest.KindCausalLM, Tolerance: rep.Tolerance, MaxRel: rep.MaxRel, OK: rep.OK}
		for _, k := range rep.Cases {
			out.Cases = append(out.Cases, verifyCaseJSON{Name: k.Name, Batch: k.Batch, Length: k.Length,
				MaxAbsLogits: &k.MaxAbs, RelLogits: &k.Rel, OK: k.OK})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "case\tbatch×length\tlogits err\t")
		for _, k := range rep.Cases {
			fmt.Fprintf(tw, "%s\t%d×%d\t%.3g\t%s\n", k.Name, k.Batch, k.Length, k.Rel, okWord(k.OK))
		}
		tw.Flush()
		fmt.Fprintf(stdout, "max relative error %.3g, tolerance %.3g: %s (%s, evaluator)\n", rep.MaxRel, rep.Tolerance, okWord(rep.OK), ev.Dir())
	}
	return verifyError(verr)
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

// verifyCaseJSON is one case of `sedd verify --json`: the score fields for a
// score model, the logits fields for an evaluator (kind causal-lm).
type verifyCaseJSON struct {
	Name           string   `json:"name"`
	Batch          int      `json:"batch"`
	Length         int      `json:"length"`
	MaxAbsLogScore *float64 `json:"max_abs_log_score,omitempty"`
	RelLogScore    *float64 `json:"rel_log_score,omitempty"`
	MaxAbsLSE      *float64 `json:"max_abs_lse,omitempty"`
	RelLSE         *float64 `json:"rel_lse,omitempty"`
	NonZeroAtInput *int     `json:"nonzero_at_input,omitempty"`
	MaxAbsLogits   *float64 `json:"max_abs_logits,omitempty"`
	RelLogits      *float64 `json:"rel_logits,omitempty"`
	OK             bool     `json:"ok"`
}

type verifyReportJSON struct {
	Dir       string           `json:"dir"`
	Kind      string           `json:"kind"`
	Tolerance float64          `json:"tolerance"`
	MaxRel    float64          `json:"max_rel"`
	OK        bool             `json:"ok"`
	Cases     []verifyCaseJSON `json:"cases"`
}

func verifyJSON(dir string, rep *sdk.VerifyReport) verifyReportJSON {
	out := verifyReportJSON{Dir: dir, Kind: manifest.KindSEDD, Tolerance: rep.Tolerance, MaxRel: rep.MaxRel, OK: rep.OK}
	for _, k := range rep.Cases {
		out.Cases = append(out.Cases, verifyCaseJSON{
			Name: k.Name, Batch: k.Batch, Length: k.Length,
			MaxAbsLogScore: &k.MaxAbsLogScore, RelLogScore: &k.RelLogScore,
			MaxAbsLSE: &k.MaxAbsLSE, RelLSE: &k.RelLSE, NonZeroAtInput: &k.NonZeroAtInput, OK: k.OK,
		})
	}
	return out
}
