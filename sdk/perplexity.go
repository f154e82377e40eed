package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"

	"github.com/sedd-go/sedd/sdk/manifest"
	"github.com/sedd-go/sedd/sdk/runtime"
)

// DefaultScoreBatch is the number of rows an Evaluator runs per forward pass
// when a ScoreRequest leaves BatchSize 0.
const DefaultScoreBatch = 8

// z95 is the two-sided 95% quantile of the standard normal distribution.
const z95 = 1.959963984540054

// Evaluator is an opened autoregressive evaluator (a "causal-lm" model
// directory, ONNX-CONTRACT.md) that scores token sequences for generative
// perplexity: how likely a model's samples are under another language model.
// An Evaluator is safe for concurrent use; Close waits for calls in flight.
type Evaluator struct {
	dir  string
	man  *manifest.Evaluator
	lm   *runtime.CausalLM
	opts options

	mu     sync.RWMutex // shared by calls in flight, exclusive in Close
	closed bool

	runners pool[*runtime.LogitsRunner]
}

// OpenEvaluator loads the evaluator directory dir: it reads sedd.json as a
// causal-lm manifest (manifest.LoadEvaluator), checks model.onnx against it
// (sha256 unless WithoutChecksum, size, graph) and creates the ONNX Runtime
// session. It takes the same options as Open.
func OpenEvaluator(dir string, opts ...Option) (*Evaluator, error) {
	o, err := resolveOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkDir(dir, "evaluator"); err != nil {
		return nil, err
	}
	man, err := manifest.LoadEvaluator(dir)
	if err != nil {
		return nil, fmt.Errorf("open evaluator %s: %w", dir, err)
	}
	if err := checkONNX(filepath.Join(dir, man.ONNX.File), man.ONNX.SHA256, man.ONNX.ExternalData, o); err != nil {
		return nil, fmt.Errorf("open evaluator %s: %w", dir, err)
	}
	lm, err := runtime.OpenCausalLM(dir, man, o.runtimeOptions()...)
	if err != nil {
		return nil, fmt.Errorf("open evaluator %s: %w", dir, err)
	}
	if fb := lm.FellBack(); fb != nil {
		o.warn(fmt.Sprintf("evaluator running on CPU: %v", fb))
	}
	return &Evaluator{dir: dir, man: man, lm: lm, opts: o}, nil
}

// Dir returns the evaluator directory.
func (e *Evaluator) Dir() string { return e.dir }

// Manifest returns a copy of the evaluator's sedd.json.
func (e *Evaluator) Manifest() manifest.Evaluator { return *e.man }

// Close releases the ONNX Runtime session. It waits for calls in flight and is
// idempotent; later calls of Score fail with ErrClosed.
func (e *Evaluator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	return errors.Join(e.runners.close(), e.lm.Close())
}

// CheckCompatible reports whether the evaluator can score m's samples: both
// must use the same tokenizer (tokenizer.json files with equal JSON content,
// so whitespace does not matter) and the evaluator's logits must cover every
// token id of m. The error wraps ErrTokenizerMismatch.
func (e *Evaluator) CheckCompatible(m *Model) error {
	mm := m.Manifest()
	if e.man.VocabSize < mm.Tokens {
		return fmt.Errorf("%w: evaluator %s predicts %d token ids but model %s has %d",
			ErrTokenizerMismatch, e.dir, e.man.VocabSize, m.Dir(), mm.Tokens)
	}
	if e.man.Tokenizer.VocabSize != mm.Tokenizer.VocabSize {
		return fmt.Errorf("%w: evaluator %s has a %d-token tokenizer but model %s a %d-token one",
			ErrTokenizerMismatch, e.dir, e.man.Tokenizer.VocabSize, m.Dir(), mm.Tokenizer.VocabSize)
	}
	same, err := sameJSONFile(filepath.Join(e.dir, e.man.Tokenizer.File), filepath.Join(m.Dir(), mm.Tokenizer.File))
	if err != nil {
		return fmt.Errorf("comparing tokenizers: %w", err)
	}
	if !same {
		return fmt.Errorf("%w: the tokenizer.json of evaluator %s differs from model %s's; generative perplexity needs an evaluator trained on the same tokenizer",
			ErrTokenizerMismatch, e.dir, m.Dir())
	}
	return nil
}

// sameJSONFile reports whether two files hold equal bytes or equal JSON values.
func sameJSONFile(a, b string) (bool, error) {
	ra, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	rb, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	if bytes.Equal(ra, rb) {
		return true, nil
	}
	var va, vb any
	if err := json.Unmarshal(ra, &va); err != nil {
		return false, fmt.Errorf("%s: %w", a, err)
	}
	if err := json.Unmarshal(rb, &vb); err != nil {
		return false, fmt.Errorf("%s: %w", b, err)
	}
	return reflect.DeepEqual(va, vb), nil
}

// ScoreRequest describes one Evaluator.Score call.
type ScoreRequest struct {
	// From is the first position scored in every row. Position 0 has no
	// context and is never scored, so 0 and 1 both mean 1. For samples
	// conditioned on a prefix of P tokens, From = P scores only the generated
	// tokens (each given the prefix and the tokens before it).
	From int
	// BatchSize is the number of rows per forward pass; 0 means
	// DefaultScoreBatch.
	BatchSize int
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

// Score returns the negative log-likelihood of each row under the evaluator:
// for row x of length L, the positions From..L−1 are scored, each given all
// tokens before it (one forward pass over the whole row; the logits at i−1
// predict token i). The first token is never scored. Rows may differ in
// length; consecutive rows of equal length share forward passes. Every row
// must be longer than From, no longer than the evaluator's trained length,
// and hold ids in [0, vocab_size). Errors: ErrBadRequest for bad rows or
// fields, ErrClosed, runtime errors, and ctx's (checked inside each forward
// pass).
func (e *Evaluator) Score(ctx context.Context, rows [][]int64, req ScoreRequest) ([]RowScore, error) {
	from := max(req.From, 1)
	batch := req.BatchSize
	switch {
	case req.From < 0:
		return nil, fmt.Errorf("%w: score from position %d: must be ≥ 0", ErrBadRequest, req.From)
	case batch < 0:
		return nil, fmt.Errorf("%w: score batch size must be ≥ 1, got %d", ErrBadRequest, batch)
	case batch == 0:
		batch = DefaultScoreBatch
	}
	vocab := e.man.VocabSize
	for i, r := range rows {
		if len(r) <= from {
			return nil, fmt.Errorf("%w: row %d has %d tokens; scoring from position %d needs at least %d", ErrBadRequest, i, len(r), from, from+1)
		}
		if len(r) > e.man.Length {
			return nil, fmt.Errorf("%w: row %d has %d tokens, more than the evaluator's trained length %d", ErrBadRequest, i, len(r), e.man.Length)
		}
		for j, t := range r {
			if t < 0 || t >= int64(vocab) {
				return nil, fmt.Errorf("%w: row %d, position %d: token %d is outside the evaluator's vocabulary [0, %d)", ErrBadRequest, i, j, t, vocab)
			}
		}
	}
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
	for start := 0; start < len(rows); {
		length := len(rows[start])
		end := start + 1
		for end < len(rows) && end-start < batch && len(rows[end]) == length {
			end++
		}
		ids = ids[:0]
		for _, r := range rows[start:end] {
			ids = append(ids, r...)
		}
		n := end - start
		logits, err := runner.Logits(ctx, ids, n, length)
		if err != nil {
			return nil, err
		}
		for b := range n {
			row := rows[start+b]
			var nll float64
			for i := from; i < length; i++ {
				l := logits[(b*length+i-1)*vocab : (b*length+i)*vocab]
				nll += logSumExp(l) - float64(l[row[i]])
			}
			if math.IsNaN(nll) || math.IsInf(nll, 0) {
				return nil, fmt.Errorf("evaluator %s: row %d: %w in the logits", e.dir, start+b, errNonFiniteLogits)
			}
			out[start+b] = RowScore{NLL: nll, Tokens: length - from}
		}
		start = end
	}
	return out, nil
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
		return ErrClosed
	}
	return nil
}

func (e *Evaluator) runner() (*runtime.LogitsRunner, error) { return e.runners.get(e.lm.NewRunner) }

func (e *Evaluator) release(r *runtime.LogitsRunner) { e.runners.put(r) }

// GenPerplexity summarizes the scores of independent samples as a generative
// perplexity with a 95% confidence interval over samples.
type GenPerplexity struct {
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

// SummarizePerplexity turns per-row scores into a GenPerplexity. Each sample
// counts once, whatever its length: the mean is over samples of their mean
// NLL per token, so that the interval describes the spread between samples.
// It fails with ErrBadRequest for no scores or a row with no scored token.
func SummarizePerplexity(scores []RowScore) (GenPerplexity, error) {
	if len(scores) == 0 {
		return GenPerplexity{}, fmt.Errorf("%w: no scores to summarize", ErrBadRequest)
	}
	per := make([]float64, len(scores))
	g := GenPerplexity{Samples: len(scores)}
	for i, s := range scores {
		if s.Tokens <= 0 {
			return GenPerplexity{}, fmt.Errorf("%w: score %d has no scored token", ErrBadRequest, i)
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
// ErrBadRequest for no rows or an empty row.
func UnigramEntropy(rows [][]int64) (Entropy, error) {
	if len(rows) == 0 {
		return Entropy{}, fmt.Errorf("%w: no rows for the unigram entropy", ErrBadRequest)
	}
	per := make([]float64, len(rows))
	var sorted []int64
	for i, r := range rows {
		if len(r) == 0 {
			return Entropy{}, fmt.Errorf("%w: row %d is empty", ErrBadRequest, i)
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
