package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

// maxSteps bounds --steps (the SDK's own limit is far above what a sweep can
// afford).
const maxSteps = 1 << 20

// defaultSweepSteps are the step counts of the sweep (issue #7).
var defaultSweepSteps = []int{8, 16, 32, 64, 128, 256, 512, 1024}

func benchSweepCommand() *cli.Command {
	return &cli.Command{
		Name:  "sweep",
		Usage: "sample at several step counts and measure generative perplexity, unigram entropy and time",
		Description: "For each predictor and step count, draws --samples samples and reports: network evaluations per\n" +
			"sample, seconds per sample (wall time of sampling only, after a warm-up run), generative perplexity\n" +
			"under the --evaluator model with a 95% interval over samples, and mean unigram entropy (nats) of the\n" +
			"samples, which exposes a low perplexity that comes from repetitive text. On a time-independent model the\n" +
			"network evaluations are those actually made (the mean per sample): a sample is evaluated again only\n" +
			"after one of its tokens moved.\n\n" +
			"Generative perplexity scores every token but the first, each given the tokens before it. With\n" +
			"--prefix, only the generated tokens after the prefix are scored (given the prefix) and only they\n" +
			"enter the entropy. --reference FILE adds the same statistics over windows of real text of the\n" +
			"model's length, evenly spaced through the file. Tables go to stdout (--json: one JSON object), progress\n" +
			"to stderr; --out DIR writes sweep.json after every row (\"complete\": false until the end), then sweep.csv,\n" +
			"ppl.png, entropy.png and time.png, all derived from sweep.json (sedd-bench plot DIR/sweep.json redraws them).\n\n" +
			"--judge DIR adds a second verdict on the same samples from an independent causal language model with its\n" +
			"own tokenizer (export/judge/convert_judge.py makes one): each sample (and reference window) is decoded to\n" +
			"text, re-tokenized with the judge's tokenizer and scored from its second token, in sliding windows of the\n" +
			"judge's length, half a window apart, when longer; the row gets the judge's perplexity with its 95% interval\n" +
			"and the unigram entropy of the judge's tokens, and --out adds judge-ppl.png.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "evaluator", Usage: "autoregressive evaluator `DIR` (a causal-lm export on the model's tokenizer)", DefaultText: "the built-in twin for the built-in model; required otherwise"},
			&cli.StringFlag{Name: "judge", Usage: "judge `DIR`: a causal-lm export with its own tokenizer that scores the decoded samples too (export/judge/convert_judge.py)"},
			&cli.StringFlag{Name: "steps", Value: sweepJoinInts(defaultSweepSteps), Usage: "comma-separated step counts"},
			&cli.StringFlag{Name: "predictors", Value: "analytic,euler", Usage: "comma-separated predictors: analytic, euler, none, first-hitting (one row: it takes no steps), confidence (a row per --thresholds), entropy-bounded (a row per --entropy-budgets)"},
			&cli.StringFlag{Name: "thresholds", Value: "0.1,0.5,0.9", Usage: "comma-separated thresholds of the confidence sampler, in (0, 1]"},
			&cli.StringFlag{Name: "entropy-budgets", Value: "60,30,12", Usage: "comma-separated entropy budgets (nats, > 0) of the entropy-bounded sampler"},
			&cli.Float64Flag{Name: "temperature", Usage: "temperature of the token a mask unmasks to, for every row (0: greedy)", DefaultText: "1"},
			&cli.IntFlag{Name: "top-k", Usage: "top-k of the token a mask unmasks to, for every row (0: off)"},
			&cli.Float64Flag{Name: "top-p", Usage: "top-p of the token a mask unmasks to, for every row (0: greedy)", DefaultText: "1, off"},
			&cli.IntFlag{Name: "samples", Value: 32, Usage: "samples per predictor and step count (at least 2, for an interval)"},
			&cli.IntFlag{Name: "batch", Value: 8, Usage: "samples per sampling call"},
			&cli.Uint64Flag{Name: "seed", Usage: "random seed; sampling call k of every run uses seed+k"},
			&cli.StringFlag{Name: "prefix", Usage: "`TEXT` every sample starts with (conditional generation)"},
			&cli.StringFlag{Name: "reference", Usage: "text `FILE` whose windows give a reference row"},
			&cli.StringFlag{Name: "out", Usage: "`DIR` to write sweep.csv, sweep.json and the plots to (created if missing)"},
			&cli.BoolFlag{Name: "json", Usage: "write the result as one JSON object on stdout"},
		}, cmdline.ModelFlags()...),
		Action: runBenchSweep,
	}
}

// sweepConfig is a validated command line.
type sweepConfig struct {
	steps      []int
	predictors []string
	samples    int
	batch      int
	seed       uint64
	prefix     string
	reference  string
	out        string
	judge      string
	// temperature, topK and topP go into every sampling request.
	temperature *float64
	topK        int
	topP        *float64
	// thresholds and budgets are the knobs of the confidence and
	// entropy-bounded rows.
	thresholds, budgets []float64
}

func sweepFlags(c *cli.Context) (sweepConfig, error) {
	cfg := sweepConfig{samples: c.Int("samples"), batch: c.Int("batch"), seed: c.Uint64("seed"),
		prefix: c.String("prefix"), reference: c.String("reference"), out: c.String("out"), judge: c.String("judge"),
		temperature: flagValue(c, "temperature"), topK: c.Int("top-k"), topP: flagValue(c, "top-p")}
	if c.Args().Present() {
		return cfg, usagef("sweep takes no arguments, got %q%s", cmdline.ClipArg(c.Args().First()), cmdline.FlagsAfterArgs(c))
	}
	var err error
	if cfg.steps, err = parseSweepSteps(c.String("steps")); err != nil {
		return cfg, err
	}
	for _, name := range sweepSplitList(c.String("predictors")) {
		if name != sdk.Analytic && name != sdk.Euler && name != sdk.None && name != sdk.FirstHitting && name != sdk.Confidence && name != sdk.EntropyBounded {
			return cfg, usagef("--predictors: %q is not a predictor: use analytic, euler, none, first-hitting, confidence or entropy-bounded", name)
		}
		if slices.Contains(cfg.predictors, name) {
			return cfg, usagef("--predictors: %s is listed twice", name)
		}
		cfg.predictors = append(cfg.predictors, name)
	}
	if cfg.thresholds, err = parseSweepKnobs("--thresholds", c.String("thresholds"), func(v float64) bool { return v > 0 && v <= 1 }, "in (0, 1]"); err != nil {
		return cfg, err
	}
	if cfg.budgets, err = parseSweepKnobs("--entropy-budgets", c.String("entropy-budgets"), func(v float64) bool { return v > 0 && v < math.Inf(1) }, "a finite number of nats > 0"); err != nil {
		return cfg, err
	}
	switch {
	case len(cfg.predictors) == 0:
		return cfg, usagef("--predictors is empty: give at least one of analytic, euler, none, first-hitting")
	case cfg.samples < 2:
		return cfg, usagef("--samples must be ≥ 2 (an interval over samples needs two), got %d", cfg.samples)
	case cfg.batch < 1:
		return cfg, usagef("--batch must be ≥ 1, got %d", cfg.batch)
	case cfg.judge != "" && cfg.prefix != "":
		return cfg, usagef("--judge scores whole decoded samples and cannot leave a --prefix out of its score: run the judged sweep without --prefix")
	}
	return cfg, nil
}

// parseSweepSteps reads a comma-separated list of distinct step counts, sorted.
func parseSweepSteps(s string) ([]int, error) {
	var steps []int
	for _, f := range sweepSplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > maxSteps {
			return nil, usagef("--steps: %q is not a step count in [1, %d]", f, maxSteps)
		}
		if slices.Contains(steps, n) {
			return nil, usagef("--steps: %d is listed twice", n)
		}
		steps = append(steps, n)
	}
	if len(steps) == 0 {
		return nil, usagef("--steps is empty: give step counts such as 8,16,32")
	}
	slices.Sort(steps)
	return steps, nil
}

// parseSweepKnobs reads a comma-separated list of distinct numbers that ok
// accepts (what says what they must be), in the order given.
func parseSweepKnobs(flag, s string, ok func(float64) bool, what string) ([]float64, error) {
	var out []float64
	for _, f := range sweepSplitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !ok(v) {
			return nil, usagef("%s: %q is not %s", flag, f, what)
		}
		if slices.Contains(out, v) {
			return nil, usagef("%s: %s is listed twice", flag, f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, usagef("%s is empty", flag)
	}
	return out, nil
}

// sweepSplitList splits a comma-separated list, dropping blanks around items.
func sweepSplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func sweepJoinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// sweepRow is one line of the result: a predictor at a step count, or the
// reference text (Kind "reference", no predictor or steps).
type sweepRow struct {
	Kind      string `json:"kind"`
	Predictor string `json:"predictor,omitempty"`
	Steps     int    `json:"steps,omitempty"`
	// Threshold and EntropyBudget are the knob of a confidence or
	// entropy-bounded row (whose Steps is its network calls).
	Threshold     float64 `json:"threshold,omitempty"`
	EntropyBudget float64 `json:"entropy_budget,omitempty"`
	// CallsPerSample is NFE unrounded.
	CallsPerSample float64 `json:"calls_per_sample,omitempty"`
	// NFE is the number of network evaluations each sample went through: the
	// mean over the row's samples, rounded (they differ where a
	// time-independent model skips a sample's evaluation while none of its
	// tokens moved).
	NFE int `json:"nfe"`
	// SecondsPerSample is the wall time of the sampling calls over the
	// number of samples; NetworkSecondsPerSample the part inside the score
	// network. The evaluator's time is not included.
	SecondsPerSample        float64 `json:"seconds_per_sample"`
	NetworkSecondsPerSample float64 `json:"network_seconds_per_sample"`
	perplexity.Summary
	Entropy       float64 `json:"entropy"`
	EntropyStdErr float64 `json:"entropy_stderr"`
	// Judge is the judge's verdict on the same samples (absent without
	// --judge).
	Judge *judgeScore `json:"judge,omitempty"`
	// Example is the text of the first sample (or reference window).
	Example string `json:"example"`
}

// judgeScore is the judge's verdict on a row's samples, decoded and
// re-tokenized with the judge's tokenizer: perplexity with its interval over
// samples (Tokens counts the judge's tokens) and the mean unigram entropy of
// the judge's tokens.
type judgeScore struct {
	perplexity.Summary
	Entropy       float64 `json:"entropy"`
	EntropyStdErr float64 `json:"entropy_stderr"`
}

// sweepReport is the whole result (sweep.json).
type sweepReport struct {
	Model        string `json:"model"`
	ModelName    string `json:"model_name"`
	Evaluator    string `json:"evaluator"`
	EvalName     string `json:"evaluator_name"`
	Length       int    `json:"length"`
	Prefix       string `json:"prefix,omitempty"`
	PrefixTokens int    `json:"prefix_tokens"`
	ScoredFrom   int    `json:"scored_from"`
	Samples      int    `json:"samples"`
	Batch        int    `json:"batch"`
	Seed         uint64 `json:"seed"`
	Threads      int    `json:"threads"`
	Provider     string `json:"provider"`
	Reference    string `json:"reference,omitempty"`
	// Judge and JudgeName name the --judge directory and its model.
	Judge     string `json:"judge,omitempty"`
	JudgeName string `json:"judge_name,omitempty"`
	// Temperature, TopK and TopP are the settings of every row's sampling
	// (absent: the model's own law).
	Temperature *float64   `json:"temperature,omitempty"`
	TopK        int        `json:"top_k,omitempty"`
	TopP        *float64   `json:"top_p,omitempty"`
	Rows        []sweepRow `json:"rows"`
	ElapsedS    float64    `json:"elapsed_s"`
	// Complete is false in files written while the sweep was still running
	// (or after it was interrupted): they hold the rows finished so far.
	Complete bool `json:"complete"`
}

func runBenchSweep(c *cli.Context) error {
	cfg, err := sweepFlags(c)
	if err != nil {
		return err
	}
	opts, err := cmdline.ModelOptions(c)
	if err != nil {
		return err
	}
	evalDir := c.String("evaluator")
	builtin := c.String("model") == "" && os.Getenv(cmdline.EnvModel) == ""
	if evalDir == "" && !builtin {
		return usagef("--evaluator DIR is required with a model other than the built-in one: " +
			"give an autoregressive evaluator exported on the model's tokenizer (kind causal-lm)")
	}
	var refText string
	if cfg.reference != "" {
		raw, err := os.ReadFile(cfg.reference)
		if err != nil {
			return fmt.Errorf("reading --reference: %w", err)
		}
		refText = string(raw)
	}
	if cfg.out != "" {
		if err := os.MkdirAll(cfg.out, 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		// sweep.csv and the plots are derived from sweep.json at the end; an
		// old copy must not sit next to a new, partial sweep.json.
		for _, name := range append([]string{"sweep.csv"}, sweepPlotFiles()...) {
			if err := os.Remove(filepath.Join(cfg.out, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--out: %w", err)
			}
		}
	}
	m, err := cmdline.OpenModel(c, "", opts)
	if err != nil {
		return err
	}
	defer m.Close()
	builtinEval := evalDir == ""
	var ev *perplexity.Evaluator
	if builtinEval {
		fsys, name := models.Evaluator()
		ev, err = perplexity.OpenFS(fsys, name, opts...)
	} else {
		ev, err = perplexity.Open(evalDir, opts...)
	}
	if err != nil {
		return cmdline.OpenError{Dir: evalDir, Err: err}
	}
	defer ev.Close()
	if err := ev.CheckCompatible(m.Info()); err != nil {
		return err
	}
	var judge *perplexity.Evaluator
	if cfg.judge != "" {
		if judge, err = perplexity.Open(cfg.judge, opts...); err != nil {
			return fmt.Errorf("--judge: %w (export/judge/convert_judge.py --print-dir converts the default judge and prints its directory)", err)
		}
		defer judge.Close()
	}
	if builtinEval {
		evalDir = "built-in"
	}
	stdout, stderr := cmdline.Streams(c)
	// finish fills in what the sweep itself does not know.
	finish := func(rep *sweepReport) {
		rep.Threads = m.Info().Threads
		rep.Evaluator = evalDir
		if builtin {
			rep.Model = "built-in"
		}
	}
	var saved *sweepReport
	var onRow func(*sweepReport) error
	if cfg.out != "" {
		onRow = func(rep *sweepReport) error {
			finish(rep)
			if err := writeSweepJSONFile(cfg.out, rep); err != nil {
				return err
			}
			saved = rep
			return nil
		}
	}
	rep, err := sweep(c.Context, m, ev, judge, cfg, refText, stderr, onRow)
	if err != nil {
		if saved != nil {
			rows := fmt.Sprintf("%d finished rows", len(saved.Rows))
			if len(saved.Rows) == 1 {
				rows = "1 finished row"
			}
			fmt.Fprintf(stderr, "sedd-bench: kept the %s in %s/sweep.json (\"complete\": false); sedd-bench plot %s/sweep.json writes its CSV and plots\n",
				rows, cfg.out, cfg.out)
		}
		return err
	}
	finish(rep)
	if cfg.out != "" {
		if err := writeSweepFiles(cfg.out, rep); err != nil {
			return err
		}
		plots := "ppl.png, entropy.png and time.png"
		if rep.Judge != "" {
			plots = "ppl.png, judge-ppl.png, entropy.png and time.png"
		}
		fmt.Fprintf(stderr, "sedd-bench: wrote sweep.json, sweep.csv, %s to %s\n", plots, cfg.out)
	}
	if c.Bool("json") {
		return writeSweepJSON(stdout, rep)
	}
	return writeSweepTable(stdout, rep)
}

// sweep draws the samples of every predictor and step count, scores them and
// summarizes each run; progress goes to stderr.
// After every finished row, onRow (if not nil) is called with the report so
// far, so that a long sweep can save its work as it goes.
// judge, when not nil, scores the decoded samples too.
func sweep(ctx context.Context, m *sdk.Model, ev, judge *perplexity.Evaluator, cfg sweepConfig, refText string, stderr *os.File,
	onRow func(*sweepReport) error) (*sweepReport, error) {
	start := time.Now()
	info := m.Info()
	rep := &sweepReport{Model: info.Dir, ModelName: info.Name, EvalName: ev.Name(),
		Length: info.Length, Prefix: cfg.prefix, Samples: cfg.samples, Batch: min(cfg.batch, cfg.samples),
		Seed: cfg.seed, Provider: info.Provider, Reference: cfg.reference,
		Temperature: cfg.temperature, TopK: cfg.topK, TopP: cfg.topP}
	if judge != nil {
		rep.Judge, rep.JudgeName = cfg.judge, judge.Name()
	}
	if info.Length > ev.Length() {
		return nil, fmt.Errorf("the model samples %d tokens but evaluator %s was trained on %d: it cannot score whole samples",
			info.Length, ev.Name(), ev.Length())
	}
	if cfg.prefix != "" {
		ids, err := m.Tokenize(cfg.prefix)
		if err != nil {
			return nil, fmt.Errorf("--prefix: %w", err)
		}
		if len(ids) >= info.Length-1 {
			return nil, fmt.Errorf("%w: --prefix takes %d tokens, leaving fewer than 2 of the %d to generate", sdk.ErrBadRequest, len(ids), info.Length)
		}
		rep.PrefixTokens = len(ids)
	}
	rep.ScoredFrom = max(rep.PrefixTokens, 1)
	// Warm-up: the first run of a shape pays for ONNX Runtime's setup.
	if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: 1, Batch: rep.Batch, Prefix: cfg.prefix, Seed: cfg.seed}); err != nil {
		return nil, err
	}
	for _, pred := range cfg.predictors {
		type setting struct {
			steps             int
			threshold, budget float64
		}
		var settings []setting
		switch pred {
		case sdk.FirstHitting:
			settings = []setting{{}} // one row: the sampler takes one step per generated token
		case sdk.Confidence:
			for _, v := range cfg.thresholds {
				settings = append(settings, setting{threshold: v})
			}
		case sdk.EntropyBounded:
			for _, v := range cfg.budgets {
				settings = append(settings, setting{budget: v})
			}
		default:
			for _, n := range cfg.steps {
				settings = append(settings, setting{steps: n})
			}
		}
		for _, st := range settings {
			row, err := sweepRun(ctx, m, ev, judge, cfg, rep, pred, st.steps, st.threshold, st.budget, stderr)
			if err != nil {
				return nil, err
			}
			rep.Rows = append(rep.Rows, row)
			rep.ElapsedS = time.Since(start).Seconds()
			if onRow != nil {
				if err := onRow(rep); err != nil {
					return nil, err
				}
			}
			// The row is on disk (with --out) before it is reported.
			if row.Threshold != 0 || row.EntropyBudget != 0 {
				fmt.Fprintf(stderr, "sedd-bench: %s %s: %.1f calls/sample, %.3f s/sample, gen. perplexity %.1f [%.1f, %.1f], entropy %.3f nats%s\n",
					row.Predictor, sweepSetting(row), row.CallsPerSample, row.SecondsPerSample, row.Perplexity, row.Low, row.High, row.Entropy, judgeNote(row))
			} else {
				fmt.Fprintf(stderr, "sedd-bench: %-8s %4d steps: %.3f s/sample, gen. perplexity %.1f [%.1f, %.1f], entropy %.3f nats%s\n",
					row.Predictor, row.Steps, row.SecondsPerSample, row.Perplexity, row.Low, row.High, row.Entropy, judgeNote(row))
			}
		}
	}
	if refText != "" {
		row, err := referenceRow(ctx, m, ev, judge, refText, rep)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "sedd-bench: reference text (%d windows): gen. perplexity %.1f [%.1f, %.1f], entropy %.3f nats%s\n",
			row.Samples, row.Perplexity, row.Low, row.High, row.Entropy, judgeNote(row))
		rep.Rows = append(rep.Rows, row)
	}
	rep.ElapsedS = time.Since(start).Seconds()
	rep.Complete = true
	return rep, nil
}

// sweepRun draws cfg.samples samples with one predictor and step count.
func sweepRun(ctx context.Context, m *sdk.Model, ev, judge *perplexity.Evaluator, cfg sweepConfig, rep *sweepReport,
	pred string, steps int, threshold, budget float64, stderr *os.File) (sweepRow, error) {
	row := sweepRow{Kind: "sample", Predictor: pred, Steps: steps, Threshold: threshold, EntropyBudget: budget}
	label := pred + " " + sweepSetting(row)
	if pred == sdk.FirstHitting {
		label = pred
	}
	b := cmdline.NewBar(stderr, label, "samples")
	defer b.Clear()
	var rows [][]int64
	var texts []string
	var elapsed, network time.Duration
	evals := 0 // sequences the network evaluated
	for k := 0; len(rows) < cfg.samples; k++ {
		n := min(rep.Batch, cfg.samples-len(rows))
		res, err := m.Sample(ctx, sdk.SampleRequest{Steps: steps, Sampler: pred, Batch: n, Threshold: threshold, EntropyBudget: budget,
			Seed: cfg.seed + uint64(k), Prefix: cfg.prefix, Temperature: cfg.temperature, TopK: cfg.topK, TopP: cfg.topP})
		if err != nil {
			return row, err
		}
		elapsed += res.Elapsed
		network += res.Network
		evals += res.NetworkRows
		row.Steps = res.Steps
		for _, s := range res.Samples {
			if len(rows) == 0 {
				row.Example = s.Text
			}
			rows = append(rows, s.Tokens)
			texts = append(texts, s.Text)
		}
		b.Update(len(rows), cfg.samples)
	}
	row.CallsPerSample = float64(evals) / float64(len(rows))
	row.NFE = int(math.Round(row.CallsPerSample))
	row.SecondsPerSample = elapsed.Seconds() / float64(len(rows))
	row.NetworkSecondsPerSample = network.Seconds() / float64(len(rows))
	if err := scoreRows(ctx, ev, rows, rep.ScoredFrom, &row); err != nil {
		return row, err
	}
	return row, judgeTexts(ctx, judge, texts, &row)
}

// judgeTexts fills row.Judge with judge's verdict on texts (nothing when
// judge is nil): each text (invalid UTF-8 replaced) is tokenized with the judge's tokenizer and scored
// from its second token, in sliding windows half the judge's length apart
// where it is longer than that length.
func judgeTexts(ctx context.Context, judge *perplexity.Evaluator, texts []string, row *sweepRow) error {
	if judge == nil {
		return nil
	}
	rows := make([][]int64, len(texts))
	for i, t := range texts {
		// A sample's tokens can end inside a character or hold byte tokens
		// that form none: as Python's bytes.decode(errors="replace") does
		// for the field's judges, such bytes become U+FFFD (here one per
		// run of bad bytes), which the judge then scores like any text.
		t = strings.ToValidUTF8(t, "\uFFFD")
		ids, err := judge.Tokenize(t)
		if err != nil {
			return fmt.Errorf("judge %s: text %d: %w", judge.Name(), i, err)
		}
		if len(ids) < 2 {
			return fmt.Errorf("judge %s: text %d (%q) is %d token(s) for the judge: at least 2 are needed to score one", judge.Name(), i, t, len(ids))
		}
		rows[i] = ids
	}
	scores, err := judge.Score(ctx, rows, perplexity.ScoreRequest{Stride: max(1, judge.Length()/2)})
	if err != nil {
		return fmt.Errorf("judge %s: %w", judge.Name(), err)
	}
	js := &judgeScore{}
	if js.Summary, err = perplexity.Summarize(scores); err != nil {
		return err
	}
	ent, err := perplexity.UnigramEntropy(rows)
	if err != nil {
		return err
	}
	js.Entropy, js.EntropyStdErr = ent.Mean, ent.StdErr
	row.Judge = js
	return nil
}

// judgeNote is the judge's part of a progress line ("" without a judge).
func judgeNote(row sweepRow) string {
	if row.Judge == nil {
		return ""
	}
	return fmt.Sprintf("; judge %.1f [%.1f, %.1f], entropy %.3f", row.Judge.Perplexity, row.Judge.Low, row.Judge.High, row.Judge.Entropy)
}

// scoreRows fills row's perplexity and entropy from rows, scoring and
// counting only the tokens from position from on (the generated part).
func scoreRows(ctx context.Context, ev *perplexity.Evaluator, rows [][]int64, from int, row *sweepRow) error {
	scores, err := ev.Score(ctx, rows, perplexity.ScoreRequest{From: from})
	if err != nil {
		return err
	}
	if row.Summary, err = perplexity.Summarize(scores); err != nil {
		return err
	}
	gen := make([][]int64, len(rows))
	for i, r := range rows {
		// With a prefix, the entropy is over the generated tokens only; without
		// one, from is 1 but the first token is a generated one too.
		if from > 1 {
			r = r[from:]
		}
		gen[i] = r
	}
	ent, err := perplexity.UnigramEntropy(gen)
	if err != nil {
		return err
	}
	row.Entropy, row.EntropyStdErr = ent.Mean, ent.StdErr
	return nil
}

// referenceRow scores rep.Samples windows of the model's length from text,
// evenly spaced through its token stream, like the samples.
func referenceRow(ctx context.Context, m *sdk.Model, ev, judge *perplexity.Evaluator, text string, rep *sweepReport) (sweepRow, error) {
	row := sweepRow{Kind: "reference"}
	ids, err := m.Tokenize(text)
	if err != nil {
		return row, fmt.Errorf("--reference: %w", err)
	}
	windows := len(ids) / rep.Length
	if windows < 2 {
		return row, fmt.Errorf("%w: --reference %s has %d tokens, fewer than two windows of %d", sdk.ErrBadRequest, rep.Reference, len(ids), rep.Length)
	}
	n := min(windows, rep.Samples)
	rows := make([][]int64, n)
	for i := range rows {
		w := i * windows / n
		rows[i] = ids[w*rep.Length : (w+1)*rep.Length]
	}
	row.Example = m.Decode(rows[0], "")
	if err := scoreRows(ctx, ev, rows, rep.ScoredFrom, &row); err != nil {
		return row, err
	}
	texts := make([]string, len(rows))
	for i, r := range rows {
		texts[i] = m.Decode(r, "")
	}
	return row, judgeTexts(ctx, judge, texts, &row)
}

// sweepSetting names a row's setting: its knob for the adaptive samplers
// (τ the threshold, γ the entropy budget), else its steps.
func sweepSetting(r sweepRow) string {
	switch {
	case r.Threshold != 0:
		return "τ=" + strconv.FormatFloat(r.Threshold, 'g', -1, 64)
	case r.EntropyBudget != 0:
		return "γ=" + strconv.FormatFloat(r.EntropyBudget, 'g', -1, 64)
	}
	return strconv.Itoa(r.Steps) + " steps"
}

// writeSweepJSON writes v indented, with a final newline.
func writeSweepJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeSweepTable(w io.Writer, rep *sweepReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	judgeCols := ""
	if rep.Judge != "" {
		judgeCols = "judge PPL\t95% interval\tjudge entropy\t"
	}
	fmt.Fprintf(tw, "predictor\tsteps\tNFE\ts/sample\tgen. PPL\t95%% interval\tentropy (nats)\t%s\n", judgeCols)
	for _, r := range rep.Rows {
		name, steps, nfe, secs := r.Predictor, strconv.Itoa(r.Steps), strconv.Itoa(r.NFE), fmt.Sprintf("%.3f", r.SecondsPerSample)
		if r.Threshold != 0 || r.EntropyBudget != 0 {
			steps = sweepSetting(r)
		}
		if r.Kind == "reference" {
			name, steps, nfe, secs = "reference text", "-", "-", "-"
		}
		judged := ""
		if j := r.Judge; j != nil {
			judged = fmt.Sprintf("%.2f\t[%.2f, %.2f]\t%.3f ± %.3f\t", j.Perplexity, j.Low, j.High, j.Entropy, j.EntropyStdErr)
		} else if rep.Judge != "" {
			judged = "-\t-\t-\t"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t[%.2f, %.2f]\t%.3f ± %.3f\t%s\n",
			name, steps, nfe, secs, r.Perplexity, r.Low, r.High, r.Entropy, r.EntropyStdErr, judged)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	judged := ""
	if rep.Judge != "" {
		judged = fmt.Sprintf(" and, decoded and re-tokenized, by the judge %s", rep.JudgeName)
	}
	_, err := fmt.Fprintf(w, "%d samples per row, length %d, scored from token %d by %s%s; %.1f s in all\n",
		rep.Samples, rep.Length, rep.ScoredFrom+1, rep.EvalName, judged, rep.ElapsedS)
	return err
}

// sweepCSVHeader names the columns of sweep.csv.
var sweepCSVHeader = []string{"kind", "predictor", "steps", "nfe", "seconds_per_sample", "network_seconds_per_sample",
	"samples", "tokens", "mean_nll", "nll_stderr", "perplexity", "perplexity_low", "perplexity_high", "entropy", "entropy_stderr",
	"threshold", "entropy_budget", "calls_per_sample",
	"judge_tokens", "judge_mean_nll", "judge_nll_stderr", "judge_perplexity", "judge_perplexity_low", "judge_perplexity_high",
	"judge_entropy", "judge_entropy_stderr"}

func writeSweepCSV(w io.Writer, rep *sweepReport) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(sweepCSVHeader); err != nil {
		return err
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 8, 64) }
	for _, r := range rep.Rows {
		steps := ""
		if r.Steps > 0 {
			steps = strconv.Itoa(r.Steps)
		}
		rec := []string{r.Kind, r.Predictor, steps, strconv.Itoa(r.NFE), f(r.SecondsPerSample), f(r.NetworkSecondsPerSample),
			strconv.Itoa(r.Samples), strconv.Itoa(r.Tokens), f(r.MeanNLL), f(r.StdErr), f(r.Perplexity), f(r.Low), f(r.High),
			f(r.Entropy), f(r.EntropyStdErr), f(r.Threshold), f(r.EntropyBudget), f(r.CallsPerSample)}
		if j := r.Judge; j != nil {
			rec = append(rec, strconv.Itoa(j.Tokens), f(j.MeanNLL), f(j.StdErr), f(j.Perplexity), f(j.Low), f(j.High), f(j.Entropy), f(j.EntropyStdErr))
		} else {
			rec = append(rec, "", "", "", "", "", "", "", "")
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeSweepFiles writes sweep.json, then sweep.csv and the plots derived
// from it, to dir. Each file is written to a temporary file and renamed into
// place, so none is ever half-written; sweep.json goes first, so that a kill
// at any moment leaves sweep.csv and the plots either absent (removed when
// the sweep started) or matching sweep.json.
func writeSweepFiles(dir string, rep *sweepReport) error {
	if err := writeSweepJSONFile(dir, rep); err != nil {
		return err
	}
	return writeDerived(dir, rep)
}

// writeDerived writes sweep.csv and the plots of rep to dir.
func writeDerived(dir string, rep *sweepReport) error {
	if err := writeAtomic(dir, "sweep.csv", func(w io.Writer) error { return writeSweepCSV(w, rep) }); err != nil {
		return err
	}
	return writeSweepPlots(dir, rep)
}

// writeSweepJSONFile writes sweep.json to dir.
func writeSweepJSONFile(dir string, rep *sweepReport) error {
	return writeAtomic(dir, "sweep.json", func(w io.Writer) error { return writeSweepJSON(w, rep) })
}

// writeAtomic writes dir/name through a temporary file renamed over it.
func writeAtomic(dir, name string, f func(io.Writer) error) error {
	path := filepath.Join(dir, name)
	out, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	err = f(out)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(out.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(out.Name(), path)
	}
	if err != nil {
		os.Remove(out.Name())
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// flagValue is a float flag's value when it is set, else nil: the SDK's
// default.
func flagValue(c *cli.Context, name string) *float64 {
	if !c.IsSet(name) {
		return nil
	}
	return new(c.Float64(name))
}
