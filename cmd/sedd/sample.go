package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/sdk"
)

// maxTextFile bounds a prompt, suffix or template read from a file: far more
// tokens than any model's length, but not enough to exhaust memory.
const maxTextFile = 16 << 20

// samplingFlags are the flags shared by sample and infill.
func samplingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "steps", Value: sdk.DefaultSteps, Usage: "sampling steps (network evaluations, plus one to denoise); first-hitting, confidence and entropy-bounded take none"},
		&cli.StringFlag{Name: "sampler", Aliases: []string{"predictor"}, Value: sdk.Analytic, Usage: "step rule: analytic, euler, none, first-hitting (exact, one network call per generated token), confidence or entropy-bounded (adaptive: several tokens per call where the network is sure; not the model's law)"},
		&cli.Float64Flag{Name: "threshold", Usage: "with --sampler confidence: unmask every position whose most likely token has at least this probability, in (0, 1] (at least one per call)", DefaultText: fmt.Sprint(sdk.DefaultThreshold)},
		&cli.Float64Flag{Name: "entropy-budget", Usage: "with --sampler entropy-bounded: unmask positions in increasing entropy while the entropy taken stays within this many nats (> 0; at least one per call)", DefaultText: fmt.Sprint(sdk.DefaultEntropyBudget)},
		&cli.Float64Flag{Name: "temperature", Value: 1, Usage: "divide the log-probabilities of the token a mask unmasks to by this (below 1 sharpens, and biases the samples; 0: greedy, the most likely token)"},
		&cli.IntFlag{Name: "top-k", Usage: "unmask only to the `K` most likely tokens (0: no limit)"},
		&cli.Float64Flag{Name: "top-p", Value: 1, Usage: "unmask only to the smallest set of most likely tokens holding this share of the probability (nucleus; 1: no limit; 0: greedy)"},
		&cli.BoolFlag{Name: "denoise", Value: true, Usage: "finish with the denoising step (--denoise=false turns it off)"},
		&cli.Float64Flag{Name: "end-time", Aliases: []string{"eps"}, Value: 1e-5, Usage: "last diffusion time, in (0, 1)"},
		&cli.IntFlag{Name: "batch", Value: 1, Usage: "number of samples"},
		&cli.IntFlag{Name: "length", Usage: "sequence length in tokens", DefaultText: "the model's trained length"},
		&cli.BoolFlag{Name: "no-cache", Usage: "on a time-independent model, call the network at every step instead of reusing its last output while no token moved (same tokens; for measuring)"},
		&cli.IntFlag{Name: "block-overlap", Usage: "with --length above the trained length, generate in blocks of the trained length, each sharing its first `N` tokens with the previous one (0: the whole length at once)"},
		&cli.Uint64Flag{Name: "seed", Usage: "random seed; the same seed gives the same samples", DefaultText: "a random one, reported on stderr (and with --json)"},
		&cli.BoolFlag{Name: "json", Usage: "write one JSON object per sample per line"},
		&cli.BoolFlag{Name: "show-steps", Usage: "show the sequence as it denoises (redrawn in place on a terminal, one frame per step otherwise)"},
	}
}

func sampleCommand() *cli.Command {
	flags := append(samplingFlags(),
		&cli.StringFlag{Name: "prefix", Usage: "`TEXT` every sample starts with"},
		&cli.StringFlag{Name: "prefix-file", Usage: "read the prefix from `FILE` (- for standard input; one final newline is dropped)"},
		&cli.StringFlag{Name: "suffix", Usage: "`TEXT` every sample ends with"},
		&cli.StringFlag{Name: "suffix-file", Usage: "read the suffix from `FILE` (- for standard input; one final newline is dropped)"},
	)
	return &cli.Command{
		Name:      "sample",
		Usage:     "generate text",
		ArgsUsage: " ",
		Flags:     append(flags, modelFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("sample takes no arguments, got %q (use --prefix TEXT to start the text, or sedd infill TEMPLATE)", oneLine(clipArg(c.Args().First())))
			}
			req, err := sampleRequest(c)
			if err != nil {
				return err
			}
			if req.Prefix, err = textFlag(c, "prefix"); err != nil {
				return err
			}
			if req.Suffix, err = textFlag(c, "suffix"); err != nil {
				return err
			}
			return generate(c, req)
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

   sedd infill --seed 7 "The [MASK:12] and that's why I was late."

A long template can come from a file instead: --template-file FILE (- for standard input).`,
		Flags: append(append(samplingFlags(),
			&cli.StringFlag{Name: "template-file", Usage: "read the template from `FILE` (- for standard input; one final newline is dropped)"},
		), modelFlags()...),
		Action: func(c *cli.Context) error {
			var tmpl string
			switch n := c.Args().Len(); {
			case n == 0 && c.IsSet("template-file"):
				var err error
				if tmpl, err = readText(c.String("template-file"), "--template-file"); err != nil {
					return err
				}
			case n == 0:
				return usagef("infill needs a TEMPLATE, for example: sedd infill \"The [MASK:12] and that's why I was late.\" (or --template-file FILE)")
			case n > 1:
				return usagef("infill takes one TEMPLATE after the flags, got %d arguments (quote the template; flags go before it)", n)
			case c.IsSet("template-file"):
				return usagef("give the template as an argument or with --template-file, not both")
			default:
				tmpl = c.Args().First()
			}
			if tmpl == "" {
				return usagef("the infill template is empty; write text with [MASK] or [MASK:n] spans")
			}
			req, err := sampleRequest(c)
			if err != nil {
				return err
			}
			req.Template = tmpl
			return generate(c, req)
		},
	}
}

// textFlag returns the text of --NAME or --NAME-file; both at once is a usage
// error.
func textFlag(c *cli.Context, name string) (string, error) {
	file := name + "-file"
	switch {
	case c.IsSet(name) && c.IsSet(file):
		return "", usagef("give --%s or --%s, not both", name, file)
	case c.IsSet(file):
		return readText(c.String(file), "--"+file)
	}
	return c.String(name), nil
}

// readText reads a text argument from path ("-" is standard input), at most
// maxTextFile bytes, without one final newline.
func readText(path, flag string) (string, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		st, err := os.Stat(path)
		switch {
		case err != nil:
			return "", cmdline.UsageError{Err: fmt.Errorf("%s: %w", flag, err)}
		case !st.Mode().IsRegular():
			return "", usagef("%s %s: not a regular file", flag, path)
		case st.Size() > maxTextFile:
			return "", usagef("%s %s: %d bytes, more than the %d a text may have", flag, path, st.Size(), maxTextFile)
		}
		f, err := os.Open(path)
		if err != nil {
			return "", cmdline.UsageError{Err: fmt.Errorf("%s: %w", flag, err)}
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxTextFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: reading %s: %w", flag, path, err)
	}
	if len(data) > maxTextFile {
		return "", usagef("%s %s: more than the %d bytes a text may have", flag, path, maxTextFile)
	}
	s := strings.TrimSuffix(string(data), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// sampleRequest reads the sampling flags. The SDK checks their values; only
// what the command line treats differently from the SDK is checked here:
// values the SDK reads as "the default" (0 steps, end time 0, batch 0) are
// mistakes on the command line. Temperature and top-p mean what they mean in
// the SDK: 0 is greedy, and left out they are 1.
func sampleRequest(c *cli.Context) (sdk.SampleRequest, error) {
	req := sdk.SampleRequest{
		Steps: c.Int("steps"), Sampler: c.String("sampler"), NoDenoise: !c.Bool("denoise"),
		EndTime: c.Float64("end-time"), Batch: c.Int("batch"), Length: c.Int("length"),
		TopK: c.Int("top-k"), BlockOverlap: c.Int("block-overlap"), NoCache: c.Bool("no-cache"),
		Threshold: c.Float64("threshold"), EntropyBudget: c.Float64("entropy-budget"),
	}
	if c.IsSet("temperature") {
		req.Temperature = new(c.Float64("temperature"))
	}
	if c.IsSet("top-p") {
		req.TopP = new(c.Float64("top-p"))
	}
	stepless := req.Sampler == sdk.FirstHitting || req.Sampler == sdk.Confidence || req.Sampler == sdk.EntropyBounded
	if stepless {
		if c.IsSet("steps") {
			return req, usagef("--sampler %s takes no --steps (first-hitting: one step per generated token; confidence, entropy-bounded: as many as --threshold or --entropy-budget make); leave out --steps", req.Sampler)
		}
		req.Steps = 0
	}
	switch {
	case c.IsSet("threshold") && req.Threshold == 0:
		return req, usagef("--threshold must be in (0, 1], got 0")
	case c.IsSet("entropy-budget") && req.EntropyBudget == 0:
		return req, usagef("--entropy-budget must be > 0, got 0")
	case req.Steps == 0 && !stepless:
		return req, usagef("--steps must be ≥ 1, got 0")
	case req.EndTime == 0:
		return req, usagef("--end-time must be in (0, 1), got 0")
	case req.Batch == 0:
		return req, usagef("--batch must be ≥ 1, got 0")
	}
	if c.IsSet("seed") {
		req.Seed = c.Uint64("seed")
	} else {
		req.Seed = sdk.RandomSeed()
	}
	return req, nil
}

// generate opens the model, runs one sampling call with progress display and
// prints the samples.
func generate(c *cli.Context, req sdk.SampleRequest) error {
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
	var res *sdk.SampleResult
	for step, err := range m.Stream(c.Context, req) {
		if err != nil {
			v.done()
			return err
		}
		v.step(step)
		res = step.Result
	}
	v.done()
	if res == nil {
		return errors.New("the sampling run ended without a result")
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

// jsonSample is the --json line of one sample: the sample and the settings
// the run used, under the SDK's names (sdk.FieldError.JSONName's rule), as
// the HTTP API reports them.
type jsonSample struct {
	Index  int     `json:"index"`
	Text   string  `json:"text"`
	Tokens []int64 `json:"tokens"`
	// The settings the run used, named as the HTTP API names them.
	api.Settings
	// NetworkRows counts the sequences the network calls evaluated, summed
	// over the batch (less than batch × network_calls where a
	// time-independent model recomputed only the rows that moved).
	NetworkRows int     `json:"network_rows"`
	ElapsedMS   float64 `json:"elapsed_ms"`
	NetworkMS   float64 `json:"network_ms"`
}

func writeJSON(w io.Writer, res *sdk.SampleResult) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i, s := range res.Samples {
		err := enc.Encode(jsonSample{
			Index: i, Text: s.Text, Tokens: s.Tokens, Settings: api.SettingsOf(res), NetworkRows: res.NetworkRows,
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
	for i, s := range res.Samples {
		var err error
		if len(res.Samples) > 1 {
			_, err = fmt.Fprintf(w, "--- sample %d\n%s\n", i, s.Text)
		} else {
			_, err = fmt.Fprintln(w, s.Text)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
