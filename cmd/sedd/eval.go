package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/internal/jsonobj"
	"github.com/sedd-go/sedd/sdk"
)

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "estimate the likelihood bound (perplexity) of a text file",
		Description: "The text is split into documents (--documents), each document is tokenized and followed by\n" +
			"the end-of-text token when the tokenizer has one, and the tokens are cut into windows of the model's\n" +
			"length. Each window's negative-ELBO bound is estimated with K Monte-Carlo timesteps; the result is a\n" +
			"perplexity bound with its 95% Monte-Carlo interval. The same --seed gives the same numbers.\n\n" +
			"With --documents eos a corpus file written as the training data is, a line holding only\n" +
			"<|endoftext|> between documents, is scored as training joined it: doc1 <|endoftext|> doc2 <|endoftext|> ...",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "text `FILE` to score, a regular file of at most 256 MiB (- for standard input)"},
			&cli.StringFlag{Name: "documents", Value: "file", Usage: "how the file splits into documents, `MODE`: file (the whole file is one), " +
				"lines (each non-empty line is one) or eos (lines holding only the model's end-of-text token, such as <|endoftext|>, " +
				"separate documents; the line breaks around them are dropped, as in the training data)"},
			&cli.BoolFlag{Name: "lines", Usage: "same as --documents lines"},
			&cli.IntFlag{Name: "timesteps", Aliases: []string{"k"}, Value: 64, Usage: "Monte-Carlo timesteps per window (the paper: 1000)"},
			&cli.StringFlag{Name: "sampling", Value: sdk.Stratified, Usage: "how timesteps are drawn: stratified or antithetic"},
			&cli.Float64Flag{Name: "min-time", Aliases: []string{"eps"}, Value: 1e-3, Usage: "lower end of the time integral, in (0, 1)"},
			&cli.IntFlag{Name: "length", Usage: "window length in tokens", DefaultText: "the model's trained length"},
			&cli.BoolFlag{Name: "drop-last", Usage: "drop a final window shorter than the length, as the paper's protocol does"},
			&cli.IntFlag{Name: "batch-size", Value: 4, Usage: "rows per network evaluation"},
			&cli.Uint64Flag{Name: "seed", Usage: "random seed"},
			&cli.BoolFlag{Name: "json", Usage: "write the result as one JSON object (corpus bound and one per window)"},
		}, modelFlags()...),
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("eval takes no arguments, got %q: pass the text file as --data FILE", c.Args().First())
	}
	req := sdk.EvaluateRequest{
		Timesteps: c.Int("timesteps"), Sampling: c.String("sampling"), MinTime: c.Float64("min-time"), Seed: c.Uint64("seed"),
		Length: c.Int("length"), BatchSize: c.Int("batch-size"), DropLast: c.Bool("drop-last"),
	}
	// The SDK checks the values; on the command line 0 is a mistake rather
	// than "the default", and one timestep leaves no standard error.
	switch {
	case c.String("data") == "":
		return usagef("eval needs --data FILE, the text to score")
	case req.Timesteps < 2:
		return usagef("--timesteps must be ≥ 2 (a standard error needs two draws), got %d", req.Timesteps)
	case req.MinTime == 0:
		return usagef("--eps must be in (0, 1), got 0")
	case req.BatchSize == 0:
		return usagef("--batch-size must be ≥ 1, got 0")
	}
	split := c.String("documents")
	if c.Bool("lines") {
		if c.IsSet("documents") && split != "lines" {
			return usagef("--lines is --documents lines; it cannot go with --documents %s", split)
		}
		split = "lines"
	}
	if split != "file" && split != "lines" && split != "eos" {
		return usagef("--documents %q: use file, lines or eos", split)
	}
	text, err := readData(c.Context, c.String("data"))
	if err != nil {
		return err
	}
	opts, err := modelOptions(c)
	if err != nil {
		return err
	}
	m, err := openModel(c, "", opts)
	if err != nil {
		return err
	}
	defer m.Close()
	if req.Documents, err = splitDocuments(m, text, split); err != nil {
		return err
	}
	stdout, stderr := streams(c)
	b := cmdline.NewBar(stderr, "evaluating", "rows")
	req.Progress = b.Update
	start := time.Now()
	res, err := m.Evaluate(c.Context, req)
	b.Clear()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	rate := throughput{ElapsedMS: elapsed.Milliseconds(), TokensPerSecond: jsonobj.Float(float64(res.Tokens) / elapsed.Seconds())}
	if c.Bool("json") {
		return writeEvalJSON(stdout, m, req, res, rate)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "tokens\t%d in %d windows\n", res.Tokens, len(res.Windows))
	fmt.Fprintf(tw, "bound\t%.4f ± %.4f nats/token (K=%d %s timesteps per window)\n",
		res.NatsPerToken, res.StdErr, req.Timesteps, req.Sampling)
	fmt.Fprintf(tw, "perplexity\t≤ %.3f  [%.3f, %.3f] 95%% Monte-Carlo interval\n",
		res.Perplexity, res.PerplexityLow, res.PerplexityHigh)
	fmt.Fprintf(tw, "throughput\t%.0f tokens/s (%.0f network rows/s, %s)\n",
		rate.TokensPerSecond, float64(len(res.Windows)*req.Timesteps)/elapsed.Seconds(), elapsed.Round(time.Millisecond))
	return tw.Flush()
}

// maxDataFile bounds the text eval reads (--data): 256 MiB, some 60 million
// tokens, hours of evaluation with the shipped model; larger corpora are
// evaluated in parts.
const maxDataFile = 256 << 20

// readData reads the data file ("-" is standard input): a regular file or
// standard input of at most maxDataFile bytes, read so that Ctrl-C (ctx)
// stops the command at any moment, also while standard input or a slow file
// keeps it waiting.
func readData(ctx context.Context, path string) (string, error) {
	type result struct {
		raw []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		raw, err := readDataFile(path)
		done <- result{raw, err}
	}()
	select {
	case r := <-done:
		return string(r.raw), r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func readDataFile(path string) ([]byte, error) {
	r := io.Reader(os.Stdin)
	if path != "-" {
		st, err := os.Stat(path)
		switch {
		case err != nil:
			return nil, cmdline.UsageError{Err: fmt.Errorf("--data: %w", err)}
		case !st.Mode().IsRegular():
			return nil, usagef("--data %s: not a regular file (%s); give a text file, or - for standard input", path, st.Mode().Type())
		case st.Size() > maxDataFile:
			return nil, usagef("--data %s: %d bytes, more than the %d (256 MiB) eval reads; evaluate the corpus in parts", path, st.Size(), maxDataFile)
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, cmdline.UsageError{Err: fmt.Errorf("--data: %w", err)}
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxDataFile+1))
	if err != nil {
		return nil, fmt.Errorf("--data: reading %s: %w", path, err)
	}
	if len(raw) > maxDataFile {
		return nil, usagef("--data %s: more than the %d bytes (256 MiB) eval reads; evaluate the corpus in parts", path, maxDataFile)
	}
	return raw, nil
}

// splitDocuments cuts the text into documents as --documents says: file (one
// document), lines (one per non-empty line) or eos (at lines holding only the
// model's end-of-text token, with sdk.SplitDocuments).
func splitDocuments(m *sdk.Model, text, how string) ([]string, error) {
	switch how {
	case "lines":
		var docs []string
		for _, l := range strings.Split(text, "\n") {
			if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
				docs = append(docs, l)
			}
		}
		return docs, nil
	case "eos":
		info := m.Info()
		if info.EOS == "" {
			return nil, usagef("--documents eos: the model's tokenizer (%s) has no end-of-text token to split at; use file or lines", info.Tokenizer)
		}
		return sdk.SplitDocuments(text, info.EOS), nil
	}
	return []string{text}, nil
}

// evalJSON is the --json output of eval.
type evalJSON struct {
	Model     string  `json:"model"`
	Timesteps int     `json:"timesteps"`
	Sampling  string  `json:"sampling"`
	Eps       float64 `json:"eps"`
	Seed      uint64  `json:"seed"`
	throughput
	sdk.Bound
	Sequences []sdk.Bound `json:"sequences"`
}

// MarshalJSON writes the fields in order with the bound's among them: the
// embedded sdk.Bound would otherwise lend its own MarshalJSON (which writes
// non-finite numbers as "+Inf", "-Inf" or "NaN") to the whole object.
func (e evalJSON) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(struct {
		Model     string  `json:"model"`
		Timesteps int     `json:"timesteps"`
		Sampling  string  `json:"sampling"`
		Eps       float64 `json:"eps"`
		Seed      uint64  `json:"seed"`
		throughput
	}{e.Model, e.Timesteps, e.Sampling, e.Eps, e.Seed, e.throughput})
	if err != nil {
		return nil, err
	}
	bound, err := e.Bound.MarshalJSON()
	if err != nil {
		return nil, err
	}
	seqs, err := json.Marshal(struct {
		Sequences []sdk.Bound `json:"sequences"`
	}{e.Sequences})
	if err != nil {
		return nil, err
	}
	return jsonobj.Join(head, bound, seqs)
}

// throughput is how fast an evaluation ran: tokens scored per second of wall
// time, each with K timesteps.
type throughput struct {
	ElapsedMS       int64         `json:"elapsed_ms"`
	TokensPerSecond jsonobj.Float `json:"tokens_per_second"`
}

func writeEvalJSON(w io.Writer, m *sdk.Model, req sdk.EvaluateRequest, res *sdk.EvaluateResult, rate throughput) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	sampling := req.Sampling
	if sampling == "" {
		sampling = sdk.Stratified
	}
	return enc.Encode(evalJSON{Model: m.Info().Dir, Timesteps: req.Timesteps, Sampling: sampling,
		Eps: req.MinTime, Seed: req.Seed, throughput: rate, Bound: res.Bound, Sequences: res.Windows})
}
