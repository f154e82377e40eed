package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/sdk"
)

// samplingFlags are the flags shared by sample and infill.
func samplingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "steps", Value: sdk.DefaultSteps, Usage: "predictor steps (network evaluations, plus one to denoise)"},
		&cli.StringFlag{Name: "predictor", Value: "analytic", Usage: "step rule: analytic, euler or none"},
		&cli.BoolFlag{Name: "denoise", Value: true, Usage: "finish with the denoising step (--denoise=false turns it off)"},
		&cli.Float64Flag{Name: "eps", Value: 1e-5, Usage: "last diffusion time, in (0, 1)"},
		&cli.IntFlag{Name: "batch", Value: 1, Usage: "number of samples"},
		&cli.IntFlag{Name: "length", Usage: "sequence length in tokens", DefaultText: "the model's trained length"},
		&cli.Uint64Flag{Name: "seed", Usage: "random seed; the same seed gives the same samples", DefaultText: "a random one, reported on stderr (and with --json)"},
		&cli.BoolFlag{Name: "json", Usage: "write one JSON object per sample per line"},
		&cli.BoolFlag{Name: "show-steps", Usage: "show the sequence as it denoises (redrawn in place on a terminal, one frame per step otherwise)"},
	}
}

func sampleCommand() *cli.Command {
	flags := append(samplingFlags(),
		&cli.StringFlag{Name: "prefix", Usage: "`TEXT` every sample starts with"},
		&cli.StringFlag{Name: "suffix", Usage: "`TEXT` every sample ends with"},
	)
	return &cli.Command{
		Name:      "sample",
		Usage:     "generate text",
		ArgsUsage: " ",
		Flags:     append(flags, modelFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("sample takes no arguments, got %q (use --prefix TEXT to start the text, or sedd infill TEMPLATE)", c.Args().First())
			}
			req, err := sampleRequest(c)
			if err != nil {
				return err
			}
			req.Prefix, req.Suffix = c.String("prefix"), c.String("suffix")
			return generate(c, req, func(m *sdk.Model, req sdk.SampleRequest) (*sdk.SampleResult, error) {
				return m.Sample(c.Context, req)
			})
		},
	}
}

func infillCommand() *cli.Command {
	return &cli.Command{
		Name:      "infill",
		Usage:     "fill the [MASK] and [MASK:n] spans of a template, keeping its text in place",
		ArgsUsage: "TEMPLATE",
		Description: `TEMPLATE is text with spans to generate: [MASK] is one token, [MASK:n] is n tokens,
anywhere in the text. Every literal piece of the template keeps its tokens at its positions.
Put the flags before the template, for example:

   sedd infill --seed 7 "The [MASK:12] and that's why I was late."`,
		Flags: append(samplingFlags(), modelFlags()...),
		Action: func(c *cli.Context) error {
			switch n := c.Args().Len(); {
			case n == 0:
				return usagef("infill needs a TEMPLATE, for example: sedd infill \"The [MASK:12] and that's why I was late.\"")
			case n > 1:
				return usagef("infill takes one TEMPLATE after the flags, got %d arguments (quote the template; flags go before it)", n)
			}
			tmpl := c.Args().First()
			if _, err := sdk.ParseTemplate(tmpl); err != nil {
				return err
			}
			req, err := sampleRequest(c)
			if err != nil {
				return err
			}
			return generate(c, req, func(m *sdk.Model, req sdk.SampleRequest) (*sdk.SampleResult, error) {
				return m.Infill(c.Context, tmpl, req)
			})
		},
	}
}

// sampleRequest reads and checks the sampling flags. Values that the SDK reads
// as "the default" (0 steps, eps 0, batch 0) are refused here: on the command
// line they are mistakes.
func sampleRequest(c *cli.Context) (sdk.SampleRequest, error) {
	var req sdk.SampleRequest
	if req.Steps = c.Int("steps"); req.Steps < 1 {
		return req, usagef("--steps must be ≥ 1, got %d", req.Steps)
	}
	p, err := sdk.ParsePredictor(c.String("predictor"))
	if err != nil {
		return req, usagef("--predictor %q: use analytic, euler or none", c.String("predictor"))
	}
	req.Predictor = p
	req.NoDenoise = !c.Bool("denoise")
	if req.Eps = c.Float64("eps"); !(req.Eps > 0 && req.Eps < 1) || math.IsNaN(req.Eps) {
		return req, usagef("--eps must be in (0, 1), got %g", req.Eps)
	}
	if req.Batch = c.Int("batch"); req.Batch < 1 {
		return req, usagef("--batch must be ≥ 1, got %d", req.Batch)
	}
	if req.Length = c.Int("length"); req.Length < 0 {
		return req, usagef("--length must be ≥ 1 (or 0 for the model's length), got %d", req.Length)
	}
	if c.IsSet("seed") {
		req.Seed = c.Uint64("seed")
	} else {
		req.Seed = uint64(rand.Uint32())
	}
	return req, nil
}

// generate opens the model, runs one sampling call with progress display and
// prints the samples.
func generate(c *cli.Context, req sdk.SampleRequest, call func(*sdk.Model, sdk.SampleRequest) (*sdk.SampleResult, error)) error {
	opts, err := modelOptions(c)
	if err != nil {
		return err
	}
	m, err := openModel(c, "", opts)
	if err != nil {
		return err
	}
	defer m.Close()
	stdout, stderr := streams(c)
	v := newView(m, stdout, stderr, c.Bool("show-steps"), c.Bool("json"))
	req.Progress = v.progress
	res, err := call(m, req)
	v.done()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(stdout, res)
	}
	if !c.IsSet("seed") {
		// Logs go to stderr; the seed makes an unseeded run repeatable.
		fmt.Fprintf(stderr, "seed %d (pass --seed %d to repeat this run)\n", req.Seed, req.Seed)
	}
	return writeText(stdout, res)
}

// jsonSample is the --json line of one sample.
type jsonSample struct {
	Index     int     `json:"index"`
	Text      string  `json:"text"`
	Tokens    []int   `json:"tokens"`
	Steps     int     `json:"steps"`
	NFE       int     `json:"nfe"`
	Predictor string  `json:"predictor"`
	Denoise   bool    `json:"denoise"`
	Eps       float64 `json:"eps"`
	Seed      uint64  `json:"seed"`
	Length    int     `json:"length"`
	ElapsedMS float64 `json:"elapsed_ms"`
	NetworkMS float64 `json:"network_ms"`
}

func writeJSON(w io.Writer, res *sdk.SampleResult) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, s := range res.Samples {
		err := enc.Encode(jsonSample{
			Index: s.Index, Text: s.Text, Tokens: s.Tokens,
			Steps: res.Steps, NFE: res.NFE, Predictor: res.Predictor.String(), Denoise: res.Denoise,
			Eps: res.Eps, Seed: res.Seed, Length: res.Length,
			ElapsedMS: math.Round(float64(res.Elapsed.Microseconds())) / 1e3,
			NetworkMS: math.Round(float64(res.Network.Microseconds())) / 1e3,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func writeText(w io.Writer, res *sdk.SampleResult) error {
	for _, s := range res.Samples {
		var err error
		if len(res.Samples) > 1 {
			_, err = fmt.Fprintf(w, "--- sample %d\n%s\n", s.Index, s.Text)
		} else {
			_, err = fmt.Fprintln(w, s.Text)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
