package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/sedd-go/sedd/internal/jsonobj"
	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

// The documented limits of a variant's quality cost (benchmarks/README.md).
const (
	boundLimit  = 0.01 // |Δ bound| / bound
	limitsWords = "likelihood bound within 1% (nats/token) of model.onnx's on the same windows and draws; " +
		"generative perplexity at every step count inside model.onnx's 95% interval"
)

func benchQualityCommand() *cli.Command {
	return &cli.Command{
		Name:  "quality",
		Usage: "measure what a variant (int8) costs against model.onnx: likelihood bound and generative perplexity",
		Description: "Runs, for the baseline graph (--baseline, model.onnx) and the candidate (--variant, int8):\n" +
			"  - the likelihood bound of --data, split and scored as sedd eval does (--documents, --drop-last,\n" +
			"    --timesteps, --eval-seed): the same windows and the same random draws for both graphs, so\n" +
			"    the difference is the graphs' alone (its standard error is over windows);\n" +
			"  - generative perplexity at each --steps: --samples samples of the trained length from the\n" +
			"    same seeds, scored by the evaluator (the built-in twin, or --evaluator DIR).\n" +
			"The candidate is within the limits when " + limitsWords + ".\n" +
			"--record writes the verdict into the variant's entry of the model's sedd.json, where Open's\n" +
			"automatic precision choice reads it.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data", Required: true, Usage: "held-out text `FILE` (the test split)"},
			&cli.StringFlag{Name: "documents", Value: "eos", Usage: "how --data splits into documents: eos, lines or file"},
			&cli.BoolFlag{Name: "drop-last", Value: true, Usage: "drop the shorter last window, as the model card's figure does"},
			&cli.IntFlag{Name: "timesteps", Value: 16, Usage: "timesteps per window of the bound"},
			&cli.Uint64Flag{Name: "eval-seed", Value: 3, Usage: "seed of the bound's draws"},
			&cli.IntFlag{Name: "batch-size", Value: 16, Usage: "windows per forward pass of the bound"},
			&cli.StringFlag{Name: "steps", Value: "64,1024", Usage: "step counts of the generative perplexity"},
			&cli.IntFlag{Name: "samples", Value: 32, Usage: "samples per step count"},
			&cli.IntFlag{Name: "batch", Value: 32, Usage: "samples per call"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "seed of the first call; later calls add 1"},
			&cli.StringFlag{Name: "variant", Value: "int8", Usage: "the graph measured"},
			&cli.StringFlag{Name: "baseline", Value: "reference", Usage: "the graph it is measured against"},
			&cli.StringFlag{Name: "evaluator", Usage: "evaluator `DIR` (kind causal-lm)", DefaultText: "the built-in twin"},
			&cli.StringFlag{Name: "out", Usage: "also write the report as JSON to `FILE`"},
			&cli.BoolFlag{Name: "record", Usage: "write the verdict into the variant's entry of sedd.json"},
		}, cmdline.ModelFlags()...),
		Action: benchQuality,
	}
}

// boundSide is one graph's bound. Its floats may be infinite (a graph
// whose bound passes 709 nats per token has a perplexity of +Inf): they are
// written by the project's rule, "+Inf", "-Inf" and "NaN" as strings
// (jsonobj.Float), as are the report's differences.
type boundSide struct {
	NatsPerToken jsonobj.Float `json:"nats_per_token"`
	StdErr       jsonobj.Float `json:"stderr"`
	Perplexity   jsonobj.Float `json:"perplexity"`
	Windows      int           `json:"windows"`
	Tokens       int           `json:"tokens"`
	Seconds      float64       `json:"seconds"`
}

type pplRow struct {
	Steps    int                `json:"steps"`
	Baseline perplexity.Summary `json:"baseline"`
	Variant  perplexity.Summary `json:"variant"`
	// SameTokens counts the samples the two graphs drew identically.
	SameTokens      int     `json:"same_tokens"`
	Within          bool    `json:"within"`
	BaselineSeconds float64 `json:"baseline_seconds"`
	VariantSeconds  float64 `json:"variant_seconds"`
}

type qualityReport struct {
	Model     string `json:"model"`
	Variant   string `json:"variant"`
	Baseline  string `json:"baseline"`
	Evaluator string `json:"evaluator"`
	Data      string `json:"data"`
	Bound     struct {
		Baseline boundSide `json:"baseline"`
		Variant  boundSide `json:"variant"`
		// RelDiff is (variant − baseline) / baseline in nats/token;
		// DiffStdErr the standard error of the per-window difference.
		RelDiff    jsonobj.Float `json:"rel_diff"`
		DiffStdErr jsonobj.Float `json:"diff_stderr"`
		Within     bool          `json:"within"`
	} `json:"bound"`
	GenPPL       []pplRow `json:"gen_ppl"`
	WithinLimits bool     `json:"within_limits"`
	Limits       string   `json:"limits"`
	Summary      string   `json:"summary"`
	ORT          string   `json:"onnxruntime"`
	Threads      int      `json:"threads"`
	When         string   `json:"when"`
}

func benchQuality(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("quality takes no arguments, got %q (use --model DIR)", cmdline.ClipArg(c.Args().First()))
	}
	dir := c.String("model")
	if dir == "" {
		dir = os.Getenv(cmdline.EnvModel)
	}
	if dir == "" {
		return usagef("quality needs --model DIR: a model directory with the variant to measure (export/variants.py adds it)")
	}
	steps, err := parseSteps(c.String("steps"))
	if err != nil {
		return err
	}
	if c.Int("samples") < 1 || c.Int("batch") < 1 {
		return usagef("--samples and --batch must be ≥ 1")
	}
	raw, err := os.ReadFile(c.String("data"))
	if err != nil {
		return fmt.Errorf("reading --data: %w", err)
	}
	opts, err := cmdline.ModelOptions(c)
	if err != nil {
		return err
	}
	stdout, stderr := cmdline.Streams(c)
	open := func(precision string) (*sdk.Model, error) {
		return cmdline.OpenModel(c, dir, append(slices.Clip(opts), sdk.WithPrecision(precision)))
	}
	base, err := open(c.String("baseline"))
	if err != nil {
		return err
	}
	defer base.Close()
	cand, err := open(c.String("variant"))
	if err != nil {
		return err
	}
	defer cand.Close()
	bi, ci := base.Info(), cand.Info()
	if bi.Variant == ci.Variant {
		return usagef("--variant %s and --baseline %s are the same graph (%s)", c.String("variant"), c.String("baseline"), bi.Variant)
	}
	var ev *perplexity.Evaluator
	evalName := c.String("evaluator")
	if evalName == "" {
		fsys, name := models.Evaluator()
		ev, err = perplexity.OpenFS(fsys, name, opts...)
		evalName = "built-in " + name
	} else {
		ev, err = perplexity.Open(evalName, opts...)
	}
	if err != nil {
		return cmdline.OpenError{Dir: evalName, Err: err}
	}
	defer ev.Close()
	if err := ev.CheckCompatible(bi); err != nil {
		return err
	}
	docs, err := splitDocs(string(raw), c.String("documents"), bi)
	if err != nil {
		return err
	}
	rep := &qualityReport{Model: bi.Dir, Variant: ci.Variant, Baseline: bi.Variant, Evaluator: evalName,
		Data: c.String("data"), Limits: limitsWords, ORT: bi.ORTVersion, Threads: bi.Threads,
		When: time.Now().UTC().Format(time.RFC3339)}

	req := sdk.EvaluateRequest{Documents: docs, Timesteps: c.Int("timesteps"), Seed: c.Uint64("eval-seed"),
		BatchSize: c.Int("batch-size"), DropLast: c.Bool("drop-last")}
	var wins [2][]sdk.Bound
	for i, m := range []*sdk.Model{base, cand} {
		fmt.Fprintf(stderr, "sedd-bench quality: bound of %s …\n", m.Info().Variant)
		start := time.Now()
		res, err := m.Evaluate(c.Context, req)
		if err != nil {
			return err
		}
		side := boundSide{NatsPerToken: jsonobj.Float(res.NatsPerToken), StdErr: jsonobj.Float(res.StdErr), Perplexity: jsonobj.Float(res.Perplexity),
			Windows: len(res.Windows), Tokens: res.Tokens, Seconds: time.Since(start).Seconds()}
		if i == 0 {
			rep.Bound.Baseline = side
		} else {
			rep.Bound.Variant = side
		}
		wins[i] = res.Windows
	}
	rep.Bound.RelDiff = rep.Bound.Variant.NatsPerToken/rep.Bound.Baseline.NatsPerToken - 1
	rep.Bound.DiffStdErr = jsonobj.Float(pairedStdErr(wins[0], wins[1])) / rep.Bound.Baseline.NatsPerToken
	rep.Bound.Within = math.Abs(float64(rep.Bound.RelDiff)) <= boundLimit

	rep.WithinLimits = rep.Bound.Within
	for _, n := range steps {
		row := pplRow{Steps: n}
		var toks [2][][]int64
		for i, m := range []*sdk.Model{base, cand} {
			fmt.Fprintf(stderr, "sedd-bench quality: %d samples of %s at %d steps …\n", c.Int("samples"), m.Info().Variant, n)
			rows, secs, err := drawSamples(c.Context, m, n, c.Int("samples"), c.Int("batch"), c.Uint64("seed"))
			if err != nil {
				return err
			}
			scores, err := ev.Score(c.Context, rows, perplexity.ScoreRequest{From: 1})
			if err != nil {
				return err
			}
			sum, err := perplexity.Summarize(scores)
			if err != nil {
				return err
			}
			if i == 0 {
				row.Baseline, row.BaselineSeconds = sum, secs
			} else {
				row.Variant, row.VariantSeconds = sum, secs
			}
			toks[i] = rows
		}
		for k := range toks[0] {
			if slices.Equal(toks[0][k], toks[1][k]) {
				row.SameTokens++
			}
		}
		row.Within = row.Variant.Perplexity >= row.Baseline.Low && row.Variant.Perplexity <= row.Baseline.High
		rep.WithinLimits = rep.WithinLimits && row.Within
		rep.GenPPL = append(rep.GenPPL, row)
	}
	parts := []string{fmt.Sprintf("bound %+.2f%% (%.4f vs %.4f nats/token)", 100*rep.Bound.RelDiff,
		rep.Bound.Variant.NatsPerToken, rep.Bound.Baseline.NatsPerToken)}
	for _, r := range rep.GenPPL {
		parts = append(parts, fmt.Sprintf("gen. PPL at %d steps %.1f vs %.1f [%.1f, %.1f]", r.Steps,
			r.Variant.Perplexity, r.Baseline.Perplexity, r.Baseline.Low, r.Baseline.High))
	}
	rep.Summary = strings.Join(parts, "; ")

	if c.Bool("record") {
		if err := recordQuality(dir, ci.Variant, rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "sedd-bench quality: recorded in %s\n", filepath.Join(dir, "sedd.json"))
	}
	if out := c.String("out"); out != "" {
		raw, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("writing the report as JSON: %w", err)
		}
		if err := os.WriteFile(out, append(raw, '\n'), 0o644); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: %s against %s, ONNX Runtime %s, %d threads\n", bi.Name, ci.Variant, bi.Variant, bi.ORTVersion, bi.Threads)
	fmt.Fprintf(tw, "measure\t%s\t%s\tdifference\twithin\n", bi.Variant, ci.Variant)
	b := rep.Bound
	fmt.Fprintf(tw, "bound (nats/token, %d windows)\t%.4f ± %.4f\t%.4f ± %.4f\t%+.3f%% ± %.3f%%\t%v\n", b.Baseline.Windows,
		b.Baseline.NatsPerToken, b.Baseline.StdErr, b.Variant.NatsPerToken, b.Variant.StdErr, 100*b.RelDiff, 100*b.DiffStdErr, b.Within)
	for _, r := range rep.GenPPL {
		fmt.Fprintf(tw, "gen. PPL, %d steps (%d samples, %d drawn alike)\t%.1f [%.1f, %.1f]\t%.1f [%.1f, %.1f]\t%+.1f%%\t%v\n",
			r.Steps, r.Baseline.Samples, r.SameTokens, r.Baseline.Perplexity, r.Baseline.Low, r.Baseline.High,
			r.Variant.Perplexity, r.Variant.Low, r.Variant.High, 100*(r.Variant.Perplexity/r.Baseline.Perplexity-1), r.Within)
	}
	fmt.Fprintf(tw, "within the limits\t\t\t\t%v\n", rep.WithinLimits)
	return tw.Flush()
}

// splitDocs splits text as sedd eval --documents does.
func splitDocs(text, mode string, info sdk.Info) ([]string, error) {
	switch mode {
	case "file":
		return []string{text}, nil
	case "lines":
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if strings.TrimSpace(l) != "" {
				out = append(out, l)
			}
		}
		return out, nil
	case "eos":
		if info.EOS == "" {
			return nil, usagef("--documents eos: the model's tokenizer has no end-of-text token")
		}
		return sdk.SplitDocuments(text, info.EOS), nil
	}
	return nil, usagef("--documents %q: use eos, lines or file", mode)
}

// pairedStdErr is the standard error of the mean per-token difference of
// two evaluations of the same windows.
func pairedStdErr(a, b []sdk.Bound) float64 {
	n := min(len(a), len(b))
	if n < 2 {
		return 0
	}
	var sum, sum2 float64
	for i := 0; i < n; i++ {
		d := b[i].NatsPerToken - a[i].NatsPerToken
		sum += d
		sum2 += d * d
	}
	mean := sum / float64(n)
	v := (sum2 - float64(n)*mean*mean) / float64(n-1)
	return math.Sqrt(max(v, 0) / float64(n))
}

// drawSamples draws n unconditional samples at the trained length, batch at
// a time from seeds seed, seed+1, ...; it returns their tokens and the
// seconds spent sampling.
func drawSamples(ctx context.Context, m *sdk.Model, steps, n, batch int, seed uint64) ([][]int64, float64, error) {
	var rows [][]int64
	var elapsed time.Duration
	for k := 0; len(rows) < n; k++ {
		res, err := m.Sample(ctx, sdk.SampleRequest{Steps: steps, Batch: min(batch, n-len(rows)), Seed: seed + uint64(k)})
		if err != nil {
			return nil, 0, err
		}
		elapsed += res.Elapsed
		for _, s := range res.Samples {
			rows = append(rows, s.Tokens)
		}
	}
	return rows, elapsed.Seconds(), nil
}

// recordQuality writes the verdict into the variant's entry of dir/sedd.json
// (the rest of the file is kept as it is, key order included), atomically.
func recordQuality(dir, variant string, rep *qualityReport) error {
	path := filepath.Join(dir, "sedd.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc orderedObject
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var vs []orderedObject
	if err := json.Unmarshal(doc.get("variants"), &vs); err != nil {
		return fmt.Errorf("%s: variants: %w", path, err)
	}
	detail, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("the report as JSON: %w", err)
	}
	q, _ := json.Marshal(map[string]any{"within_limits": rep.WithinLimits, "limits": rep.Limits, "summary": rep.Summary,
		"detail": json.RawMessage(detail)})
	found := false
	for i := range vs {
		var name string
		if json.Unmarshal(vs[i].get("name"), &name) == nil && name == variant {
			vs[i].set("quality", q)
			found = true
		}
	}
	if !found {
		return errors.New("sedd.json lists no variant " + strconv.Quote(variant))
	}
	v, _ := json.Marshal(vs)
	doc.set("variants", v)
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "  "); err != nil {
		return err
	}
	pretty.WriteByte('\n')
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pretty.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// orderedObject is a JSON object that keeps its keys' order.
type orderedObject struct {
	keys []string
	vals map[string]json.RawMessage
}

func (o *orderedObject) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	o.vals = map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if _, dup := o.vals[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.vals[k] = v
	}
	return nil
}

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(o.vals[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o orderedObject) get(k string) json.RawMessage { return o.vals[k] }

func (o *orderedObject) set(k string, v json.RawMessage) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}
