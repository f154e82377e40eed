// Package perplexity measures generative perplexity: how likely the samples
// of a model are under another language model, the evaluator, an
// autoregressive network exported as a "causal-lm" model directory
// (docs/ONNX-CONTRACT.md). It is a benchmark metric, used by the sedd-bench
// command to compare samplers and step counts; report it next to the
// samples' unigram entropy (UnigramEntropy), since repetitive text fakes a low
// perplexity.
//
//	ev, err := perplexity.Open("models/brown-sedd-small-ar")
//	defer ev.Close()
//	scores, err := ev.Score(ctx, rows, perplexity.ScoreRequest{})
//	summary, err := perplexity.Summarize(scores)
//
// An evaluator with another tokenizer than the model's, a judge (such as a
// pretrained LM converted by export/judge/convert_judge.py), scores decoded
// text: Tokenize each sample's text with it, then Score with a Stride so that
// rows longer than its length are scored in sliding windows.
package perplexity

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"sync"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/internal/config"
	"github.com/sedd-go/sedd/sdk/internal/golden"
	"github.com/sedd-go/sedd/sdk/internal/kind"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/internal/pool"
	"github.com/sedd-go/sedd/sdk/tokenizer"
)

// defaultScoreBatch is the number of rows an Evaluator runs per forward pass
// when a ScoreRequest leaves BatchSize 0.
const defaultScoreBatch = 8

// maxLogitsPerPass bounds the float32 logits of one forward pass (256 MiB):
// with a large vocabulary and long windows, Score runs fewer rows at once
// than BatchSize asks.
const maxLogitsPerPass = 64 << 20

// z95 is the two-sided 95% quantile of the standard normal distribution.
const z95 = 1.959963984540054

// Evaluator is an opened autoregressive evaluator that scores token
// sequences. An Evaluator is safe for concurrent use; Close waits for calls
// in flight.
type Evaluator struct {
	dir       modeldir.Dir
	man       *manifest.Evaluator
	lm        *onnxrt.CausalLM
	tok       *tokenizer.Tokenizer
	tokDigest string

	mu     sync.RWMutex // shared by calls in flight, exclusive in Close
	closed bool

	runners pool.Pool[*onnxrt.LogitsRunner]
}

// Open loads the evaluator directory dir: it reads sedd.json as a causal-lm
// manifest, checks model.onnx against it (size, sha256, graph) and creates
// the ONNX Runtime session. It takes the options of sdk.Open, so that one
// list configures a model and its evaluator; WithPrecision and WithCacheDir
// do not apply (an evaluator runs its model.onnx, in float32). Errors match
// sdk.ErrBadModel, sdk.ErrRuntimeUnavailable, sdk.ErrCUDAUnavailable or
// sdk.ErrBadRequest, as sdk.Open's do.
func Open(dir string, opts ...sdk.Option) (*Evaluator, error) {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return nil, kind.Wrap(sdk.ErrBadModel, fmt.Errorf("open evaluator %s: %w", dir, err))
	case !st.IsDir():
		return nil, kind.Wrap(sdk.ErrBadModel, fmt.Errorf("open evaluator %s: not a directory", dir))
	}
	return open(modeldir.OnDisk(dir), opts)
}

// OpenFS loads an evaluator directory held in fsys (such as one embedded
// with go:embed); name says in messages which one it is.
func OpenFS(fsys fs.FS, name string, opts ...sdk.Option) (*Evaluator, error) {
	if fsys == nil {
		return nil, fmt.Errorf("%w: nil fs.FS", sdk.ErrBadRequest)
	}
	return open(modeldir.FromFS(fsys, name), opts)
}

func open(d modeldir.Dir, opts []sdk.Option) (*Evaluator, error) {
	o := config.Defaults()
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil Option", sdk.ErrBadRequest)
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*Evaluator, error) {
		return nil, classifyOpen(fmt.Errorf("open evaluator %s: %w", d, err))
	}
	raw, err := d.ReadFile(manifest.FileName, modeldir.MaxManifest)
	if err != nil {
		return fail(err)
	}
	man, err := manifest.ParseEvaluator(raw)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", manifest.FileName, err))
	}
	tok, err := d.ReadVerified(man.Tokenizer.File, modeldir.MaxTokenizer, man.Tokenizer.SHA256)
	if err != nil {
		return fail(err)
	}
	digest, err := modeldir.JSONDigest(tok)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", man.Tokenizer.File, err))
	}
	tk, err := tokenizer.Parse(tok, man.Tokenizer.File)
	if err != nil {
		return fail(err)
	}
	var src onnxrt.Source
	if man.ONNX.ExternalData {
		path, err := d.HashFile(man.ONNX.File, man.ONNX.Size, "")
		if err != nil {
			return fail(err)
		}
		src = onnxrt.Source{Path: path}
	} else {
		data, err := d.Checked(man.ONNX.File, man.ONNX.Size, man.ONNX.SHA256)
		if err != nil {
			return fail(err)
		}
		src = onnxrt.Source{Path: man.ONNX.File, Data: data}
	}
	lm, err := onnxrt.OpenCausalLMSource(src, man.VocabSize, o.Runtime()...)
	if err != nil {
		return fail(err)
	}
	if fb := lm.FellBack(); fb != nil {
		o.Logger.Warn("evaluator running on the CPU", "reason", fb.Error())
	}
	return &Evaluator{dir: d, man: man, lm: lm, tok: tk, tokDigest: digest}, nil
}

// Close releases the ONNX Runtime session. It waits for calls in flight and is
// idempotent; later calls of Score and Verify fail with sdk.ErrClosed.
func (e *Evaluator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	return errors.Join(e.runners.Close(), e.lm.Close())
}

// Name returns the evaluator's name in its sedd.json.
func (e *Evaluator) Name() string { return e.man.Name }

// VocabSize returns the number of logits per position.
func (e *Evaluator) VocabSize() int { return e.man.VocabSize }

// Length returns the evaluator's trained length, the longest row it scores.
func (e *Evaluator) Length() int { return e.man.Length }

// Tokenize returns the evaluator's token ids of text (its tokenizer.json, with
// no beginning-of-text or other template token added), for scoring decoded
// text with an evaluator whose tokenizer differs from the model's: a judge.
// Text that is not valid UTF-8 is an sdk.ErrBadRequest.
func (e *Evaluator) Tokenize(text string) ([]int64, error) {
	ids, err := e.tok.Encode(text)
	if err != nil {
		if errors.Is(err, tokenizer.ErrInvalidUTF8) {
			return nil, fmt.Errorf("%w: %v", sdk.ErrBadRequest, err)
		}
		return nil, err
	}
	return ids, nil
}

// CheckCompatible reports whether the evaluator can score the samples of the
// model info describes: both must use the same tokenizer (tokenizer.json
// files with equal JSON content) and the evaluator's logits must cover every
// token id of the model. The error matches sdk.ErrBadRequest.
func (e *Evaluator) CheckCompatible(info sdk.Info) error {
	if e.man.VocabSize < info.Tokens {
		return fmt.Errorf("%w: evaluator %s predicts %d token ids but model %s has %d",
			sdk.ErrBadRequest, e.dir, e.man.VocabSize, info.Dir, info.Tokens)
	}
	if info.TokenizerDigest != e.tokDigest {
		return fmt.Errorf("%w: the tokenizer.json of evaluator %s differs from model %s's; generative perplexity needs an evaluator trained on the same tokenizer",
			sdk.ErrBadRequest, e.dir, info.Dir)
	}
	return nil
}

// classifyOpen gives an error of Open its kind: the errors of the packages
// below carry theirs from where they were born (the library, the device, a
// bad option), and anything else is the model's.
func classifyOpen(err error) error { return kind.Wrap(sdk.ErrBadModel, err) }

// ScoreRequest describes one Evaluator.Score call.
type ScoreRequest struct {
	// From is the first position scored in every row. Position 0 has no
	// context and is never scored, so 0 and 1 both mean 1. For samples
	// conditioned on a prefix of P tokens, From = P scores only the generated
	// tokens (each given the prefix and the tokens before it).
	From int
	// BatchSize is the number of rows per forward pass; 0 means
	// defaultScoreBatch.
	BatchSize int
	// Stride, when positive, lets rows be longer than the evaluator's
	// length L: such a row is scored in sliding windows of L tokens, each
	// Stride tokens after the one before (at most L − 1), and every position is
	// scored once, in the first window that holds it past the window's own
	// first token, so a position far into the row has at least L − Stride
	// tokens of context. 0 refuses rows longer than L.
	Stride int
}

// RowScore is the evaluator's verdict on one row.
type RowScore struct {
	// NLL is the sum over the scored positions i of −log p(x_i | x_<i), in
	// nats.
	NLL float64 `json:"nll"`
	// Tokens is the number of scored positions: len(row) − max(From, 1).
	Tokens int `json:"tokens"`
}

// MeanNLL returns NLL per scored token (NaN when none was scored).
func (s RowScore) MeanNLL() float64 { return s.NLL / float64(s.Tokens) }

// segment is one forward pass's worth of a row: the tokens row[start:end],
// of which positions from..end−1 of the row are scored.
type segment struct {
	row, start, end, from int
}

// Score returns the negative log-likelihood of each row under the evaluator:
// for row x of length L, the positions From..L−1 are scored, each given all
// tokens before it (one forward pass over the whole row, or over its sliding
// windows with Stride; the logits at i−1 predict token i). The first token is
// never scored. Rows may differ in length: shorter rows of a forward pass
// are padded at the end, which a causal model's logits at the real
// positions do not see. Every row must be longer than From, no longer than
// the evaluator's trained length unless Stride is set, and hold ids in
// [0, vocab_size). Errors: sdk.ErrBadRequest for bad rows or fields,
// sdk.ErrClosed, runtime errors, and ctx's (checked inside each forward
// pass).
func (e *Evaluator) Score(ctx context.Context, rows [][]int64, req ScoreRequest) ([]RowScore, error) {
	from := max(req.From, 1)
	batch := req.BatchSize
	window := e.man.Length
	switch {
	case req.From < 0:
		return nil, fmt.Errorf("%w: score from position %d: must be ≥ 0", sdk.ErrBadRequest, req.From)
	case batch < 0:
		return nil, fmt.Errorf("%w: score batch size must be ≥ 1, got %d", sdk.ErrBadRequest, batch)
	case req.Stride < 0 || req.Stride >= window:
		return nil, fmt.Errorf("%w: score stride %d: must be in [1, %d] (below the evaluator's length), or 0 for no sliding windows", sdk.ErrBadRequest, req.Stride, window-1)
	case batch == 0:
		batch = defaultScoreBatch
	}
	vocab := e.man.VocabSize
	for i, r := range rows {
		if len(r) <= from {
			return nil, fmt.Errorf("%w: row %d has %d tokens; scoring from position %d needs at least %d", sdk.ErrBadRequest, i, len(r), from, from+1)
		}
		if len(r) > window && req.Stride == 0 {
			return nil, fmt.Errorf("%w: row %d has %d tokens, more than the evaluator's trained length %d (set ScoreRequest.Stride to score it in sliding windows)", sdk.ErrBadRequest, i, len(r), window)
		}
		for j, t := range r {
			if t < 0 || t >= int64(vocab) {
				return nil, fmt.Errorf("%w: row %d, position %d: token %d is outside the evaluator's vocabulary [0, %d)", sdk.ErrBadRequest, i, j, t, vocab)
			}
		}
	}
	segs := segments(rows, from, window, req.Stride)
	// Longest first, stable: rows of equal length keep their order and share
	// passes as before; a pass pads only up to its own longest segment.
	slices.SortStableFunc(segs, func(a, b segment) int { return (b.end - b.start) - (a.end - a.start) })
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	runner, err := e.runner()
	if err != nil {
		return nil, err
	}
	defer e.release(runner)
	out := make([]RowScore, len(rows))
	var ids []int64
	for start := 0; start < len(segs); {
		length := segs[start].end - segs[start].start
		n := min(batch, len(segs)-start, max(1, maxLogitsPerPass/(length*vocab)))
		ids = ids[:0]
		for _, sg := range segs[start : start+n] {
			ids = append(ids, rows[sg.row][sg.start:sg.end]...)
			for range length - (sg.end - sg.start) {
				ids = append(ids, 0) // padding after the segment: never seen by its positions
			}
		}
		logits, err := runner.Logits(ctx, ids, n, length)
		if err != nil {
			return nil, err
		}
		for b, sg := range segs[start : start+n] {
			row := rows[sg.row]
			var nll float64
			for i := sg.from; i < sg.end; i++ {
				k := b*length + i - 1 - sg.start
				l := logits[k*vocab : (k+1)*vocab]
				nll += logSumExp(l) - float64(l[row[i]])
			}
			if math.IsNaN(nll) || math.IsInf(nll, 0) {
				return nil, fmt.Errorf("evaluator %s: row %d: %w in the logits", e.dir, sg.row, errNonFiniteLogits)
			}
			out[sg.row].NLL += nll
			out[sg.row].Tokens += sg.end - sg.from
		}
		start += n
	}
	return out, nil
}

// segments cuts rows into the forward passes that score positions from on:
// one per row no longer than window, else sliding windows stride apart.
func segments(rows [][]int64, from, window, stride int) []segment {
	var segs []segment
	for i, r := range rows {
		n := len(r)
		if n <= window {
			segs = append(segs, segment{row: i, start: 0, end: n, from: from})
			continue
		}
		done := from
		for start := 0; ; start += stride {
			end := min(start+window, n)
			if f := max(done, start+1); f < end {
				segs = append(segs, segment{row: i, start: start, end: end, from: f})
			}
			done = max(done, end)
			if end == n {
				break
			}
		}
	}
	return segs
}

var errNonFiniteLogits = errors.New("NaN or infinite value")

// logSumExp returns log Σ exp(v) in float64.
func logSumExp(v []float32) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, float64(x))
	}
	if math.IsInf(m, 0) || math.IsNaN(m) {
		return m
	}
	var s float64
	for _, x := range v {
		s += math.Exp(float64(x) - m)
	}
	return m + math.Log(s)
}

func (e *Evaluator) enter() error {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return sdk.ErrClosed
	}
	return nil
}

func (e *Evaluator) runner() (*onnxrt.LogitsRunner, error) { return e.runners.Get(e.lm.NewRunner) }

func (e *Evaluator) release(r *onnxrt.LogitsRunner) { e.runners.Put(r) }

// Summary summarizes the scores of independent samples as a generative
// perplexity with a 95% confidence interval over samples.
type Summary struct {
	// Samples is the number of rows; Tokens the scored positions over all.
	Samples int `json:"samples"`
	Tokens  int `json:"tokens"`
	// MeanNLL is the mean over samples of each sample's NLL per token
	// (nats), and StdErr its standard error (sample standard deviation over
	// √Samples; 0 for one sample).
	MeanNLL float64 `json:"mean_nll"`
	StdErr  float64 `json:"nll_stderr"`
	// Perplexity is exp(MeanNLL); Low and High are exp(MeanNLL ∓ 1.96·StdErr).
	Perplexity float64 `json:"perplexity"`
	Low        float64 `json:"perplexity_low"`
	High       float64 `json:"perplexity_high"`
}

// Summarize turns per-row scores into a Summary. Each sample
// counts once, whatever its length: the mean is over samples of their mean
// NLL per token, so that the interval describes the spread between samples.
// It fails with sdk.ErrBadRequest for no scores or a row with no scored token.
func Summarize(scores []RowScore) (Summary, error) {
	if len(scores) == 0 {
		return Summary{}, fmt.Errorf("%w: no scores to summarize", sdk.ErrBadRequest)
	}
	per := make([]float64, len(scores))
	g := Summary{Samples: len(scores)}
	for i, s := range scores {
		if s.Tokens <= 0 {
			return Summary{}, fmt.Errorf("%w: score %d has no scored token", sdk.ErrBadRequest, i)
		}
		per[i] = s.MeanNLL()
		g.Tokens += s.Tokens
	}
	g.MeanNLL, g.StdErr = meanStdErr(per)
	g.Perplexity = math.Exp(g.MeanNLL)
	g.Low = math.Exp(g.MeanNLL - z95*g.StdErr)
	g.High = math.Exp(g.MeanNLL + z95*g.StdErr)
	return g, nil
}

// meanStdErr returns the mean of v and its standard error (0 for fewer than
// two values).
func meanStdErr(v []float64) (mean, se float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)-1) / float64(len(v)))
}

// Entropy is the mean unigram entropy of a set of samples, which shows
// whether a low perplexity comes from repetitive text.
type Entropy struct {
	// Mean is the mean over samples of each sample's unigram entropy, in
	// nats; StdErr its standard error over samples (0 for one sample).
	Mean   float64 `json:"mean"`
	StdErr float64 `json:"stderr"`
}

// UnigramEntropy returns the unigram entropy of rows: for each row, the
// entropy −Σ_v p_v log p_v (natural log) of the frequencies p_v = count of
// token v in the row / row length, averaged over rows. A row of one token
// repeated has entropy 0; a row of L distinct tokens has log L, the largest
// value for its length (log 128 ≈ 4.85 nats). Samples of natural text land
// a little below that bound; much lower values mean repetition. It fails with
// sdk.ErrBadRequest for no rows or an empty row.
func UnigramEntropy(rows [][]int64) (Entropy, error) {
	if len(rows) == 0 {
		return Entropy{}, fmt.Errorf("%w: no rows for the unigram entropy", sdk.ErrBadRequest)
	}
	per := make([]float64, len(rows))
	var sorted []int64
	for i, r := range rows {
		if len(r) == 0 {
			return Entropy{}, fmt.Errorf("%w: row %d is empty", sdk.ErrBadRequest, i)
		}
		// Counting runs of a sorted copy sums in a fixed order, so the
		// result is the same bit for bit on every run.
		sorted = append(sorted[:0], r...)
		slices.Sort(sorted)
		n := float64(len(r))
		var h float64
		for j := 0; j < len(sorted); {
			k := j + 1
			for k < len(sorted) && sorted[k] == sorted[j] {
				k++
			}
			p := float64(k-j) / n
			h -= p * math.Log(p)
			j = k
		}
		per[i] = h
	}
	var e Entropy
	e.Mean, e.StdErr = meanStdErr(per)
	return e, nil
}

// VerifyCase is the outcome of one golden case of an evaluator.
type VerifyCase struct {
	Name   string `json:"name"`
	Batch  int    `json:"batch"`
	Length int    `json:"length"`
	// MaxAbs is max|ONNX − PyTorch| over the case's logits; Rel divides it
	// by max(1, max|PyTorch|).
	MaxAbs float64 `json:"max_abs_logits"`
	Rel    float64 `json:"rel_logits"`
	OK     bool    `json:"ok"`
}

// VerifyReport is the outcome of Evaluator.Verify.
type VerifyReport struct {
	Tolerance float64      `json:"tolerance"`
	Cases     []VerifyCase `json:"cases"`
	// MaxRel is the largest relative error over all cases.
	MaxRel float64 `json:"max_rel"`
	OK     bool    `json:"ok"`
}

// Verify runs every golden input of the evaluator through ONNX Runtime and
// compares the logits with the PyTorch ones stored at export, as
// sdk.Model.Verify does for a score network. The report is returned even when
// a case fails; the error then matches sdk.ErrBadModel.
func (e *Evaluator) Verify(ctx context.Context, req sdk.VerifyRequest) (*VerifyReport, error) {
	tol, name, err := golden.Settings(req.Tolerance, e.man.Verify)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", sdk.ErrBadRequest, err)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	cases, err := golden.Read(e.dir, name, e.man.Verify, golden.ParseLogits)
	if err != nil {
		return nil, kind.Wrap(sdk.ErrBadModel, fmt.Errorf("verify evaluator %s: %w", e.dir, err))
	}
	runner, err := e.runner()
	if err != nil {
		return nil, err
	}
	defer e.release(runner)
	rep := &VerifyReport{Tolerance: tol, OK: true}
	for _, c := range cases {
		if c.Vocab != e.man.VocabSize {
			return nil, kind.Wrap(sdk.ErrBadModel, fmt.Errorf("verify evaluator %s: case %s has %d logits per position, the evaluator %d", e.dir, c.Name, c.Vocab, e.man.VocabSize))
		}
		got, err := runner.Logits(ctx, c.InputIDs, c.Batch, c.Length)
		if err != nil {
			return nil, fmt.Errorf("golden case %s: %w", c.Name, err)
		}
		d, err := golden.Compare(got, c.Logits)
		if err != nil {
			return nil, kind.Wrap(sdk.ErrBadModel, fmt.Errorf("verify evaluator %s: case %s: %w", e.dir, c.Name, err))
		}
		vc := VerifyCase{Name: c.Name, Batch: c.Batch, Length: c.Length, MaxAbs: d.MaxAbs, Rel: d.Rel(), OK: d.Within(tol)}
		rep.MaxRel = max(rep.MaxRel, vc.Rel)
		rep.OK = rep.OK && vc.OK
		rep.Cases = append(rep.Cases, vc)
	}
	if !rep.OK {
		return rep, kind.Wrap(sdk.ErrBadModel, fmt.Errorf("verify evaluator %s: max relative error %.3g exceeds %.3g", e.dir, rep.MaxRel, tol))
	}
	return rep, nil
}
