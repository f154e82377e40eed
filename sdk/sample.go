package sdk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/runtime"
)

// Predictor names a reverse-diffusion step rule: Analytic (the reference's
// "Tweedie τ-leaping", the default), Euler or None.
type Predictor = diffusion.Predictor

// The predictors of SEDD.md.
const (
	Analytic = diffusion.Analytic
	Euler    = diffusion.Euler
	None     = diffusion.None
)

// ParsePredictor reads "analytic", "euler" or "none".
func ParsePredictor(name string) (Predictor, error) { return diffusion.ParsePredictor(name) }

// Limits on a request, checked before anything is allocated for it.
const (
	// MaxLengthFactor bounds SampleRequest.Length to this many times the
	// model's trained length.
	MaxLengthFactor = 16
	// MaxScoreElements bounds Batch × Length × N, the float32 scores of one
	// network output (8 GiB at this bound), which the SDK allocates in host
	// memory.
	MaxScoreElements = 1 << 31
)

// DefaultSteps is the number of predictor steps when a request leaves Steps 0:
// the reference's training-time sampling setting.
const DefaultSteps = 128

// Fixed pins tokens at a position of every sample: Text is tokenized and its
// tokens placed from Pos on, or Tokens are used as they are. Exactly one of
// Text and Tokens must be set. Spans must not overlap each other or the
// prefix and suffix.
type Fixed struct {
	Pos    int
	Text   string
	Tokens []int
}

// SampleRequest describes one sampling call. Its zero value is valid: one
// unconditional sample of the model's trained length with the analytic
// predictor, DefaultSteps steps, denoising on, eps 1e-5 and seed 0.
type SampleRequest struct {
	// Steps is the number of predictor steps (network evaluations, plus one for
	// the denoiser). 0 means DefaultSteps; negative or more than
	// diffusion.MaxSteps is an error.
	Steps int
	// Predictor is the step rule; the zero value is Analytic.
	Predictor Predictor
	// NoDenoise turns off the final denoising step (on in the reference).
	NoDenoise bool
	// Eps is the last time of the grid, in (0, 1); 0 means 1e-5.
	Eps float64
	// Batch is the number of samples; 0 means 1.
	Batch int
	// Length is the sequence length in tokens; 0 means the trained length.
	// Other lengths up to MaxLengthFactor times the trained length run, with
	// a warning; Batch × Length × N must not exceed MaxScoreElements.
	Length int
	// Seed makes the run reproducible bit for bit on CPU.
	Seed uint64
	// Prefix and Suffix are texts pinned at the start and at the end of every
	// sample; Fixed pins further spans anywhere.
	Prefix, Suffix string
	Fixed          []Fixed
	// Progress, if set, is called after each step; returning an error stops
	// the run, and Sample returns that error. It runs inside the call, so it
	// must not call Close on the same Model: Close waits for calls in flight,
	// and would wait for itself. Return an error (or cancel the context)
	// instead, and close after Sample returns.
	Progress func(Progress) error
}

// Progress is what a SampleRequest.Progress callback sees after each step.
type Progress struct {
	// Step counts steps done, from 1 to Steps (the denoiser is the last step).
	Step, Steps int
	// T is the diffusion time the tokens now belong to (0 after denoising).
	T float64
	// Batch and Length give the shape of Tokens.
	Batch, Length int
	// Tokens holds the current tokens of every row, row-major; masks are
	// Model.Mask(). Valid only during the callback; do not modify.
	Tokens []int64
	// Masked counts the positions still masked (absorbing graph), over all rows.
	Masked int
}

// Row returns the current tokens of row b.
func (p Progress) Row(b int) []int64 { return p.Tokens[b*p.Length : (b+1)*p.Length] }

// Sample is one generated sequence.
type Sample struct {
	Index  int
	Tokens []int
	Text   string
}

// SampleResult is the outcome of Model.Sample or Model.Infill.
type SampleResult struct {
	Samples []Sample
	// Steps is the number of predictor steps, NFE the number of network
	// evaluations (Steps, plus one for the denoiser).
	Steps, NFE int
	Predictor  Predictor
	Denoise    bool
	Eps        float64
	Seed       uint64
	Length     int
	// Elapsed is the wall time of the whole call; Network is the part of it
	// spent in the score network's forward passes (ONNX Runtime), so
	// Elapsed − Network is this SDK's own cost: the predictor's draws,
	// projection, checks and decoding.
	Elapsed, Network time.Duration
}

// timedScore is the Scorer with a clock around each forward pass.
type timedScore struct {
	sc      *runtime.Scorer
	elapsed time.Duration
}

func (t *timedScore) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	start := time.Now()
	s, err := t.sc.Score(ctx, x, sigma, batch, length)
	t.elapsed += time.Since(start)
	return s, err
}

// Mask returns the absorbing graph's mask id, or -1 for a uniform graph.
func (m *Model) Mask() int64 {
	if a, ok := m.graph.(diffusion.Absorbing); ok {
		return a.Mask()
	}
	return -1
}

// resolved is a validated request.
type resolved struct {
	cfg    diffusion.Config
	keep   [2]int // only tokens [keep[0], keep[1]) of each row are returned
	req    SampleRequest
	masked bool
}

func (m *Model) resolve(req SampleRequest) (*resolved, error) {
	r := &resolved{req: req}
	steps := req.Steps
	switch {
	case steps == 0:
		steps = DefaultSteps
	case steps < 0:
		return nil, fmt.Errorf("%w: steps must be ≥ 1, got %d", ErrBadRequest, steps)
	case steps > diffusion.MaxSteps:
		return nil, fmt.Errorf("%w: steps must be ≤ %d, got %d", ErrBadRequest, diffusion.MaxSteps, steps)
	}
	eps := req.Eps
	if eps == 0 {
		eps = diffusion.DefaultEps
	}
	if !(eps > 0 && eps < 1) || math.IsNaN(eps) {
		return nil, fmt.Errorf("%w: eps must be in (0, 1), got %g", ErrBadRequest, eps)
	}
	batch := req.Batch
	switch {
	case batch == 0:
		batch = 1
	case batch < 0:
		return nil, fmt.Errorf("%w: batch must be ≥ 1, got %d", ErrBadRequest, batch)
	}
	length := req.Length
	switch {
	case length == 0:
		length = m.man.Length
	case length < 0:
		return nil, fmt.Errorf("%w: length must be ≥ 1, got %d", ErrBadRequest, length)
	}
	if maxLen := MaxLengthFactor * m.man.Length; length > maxLen {
		return nil, fmt.Errorf("%w: length %d is more than %d times the trained length %d; the network's attention grows with its square",
			ErrBadRequest, length, MaxLengthFactor, m.man.Length)
	}
	// batch is bounded first, so that the products cannot overflow.
	if batch > (1<<24)/length || int64(batch)*int64(length)*int64(m.man.N()) > MaxScoreElements {
		return nil, fmt.Errorf("%w: batch %d × length %d is too large: one network output would hold more than %d scores; lower the batch",
			ErrBadRequest, batch, length, int64(MaxScoreElements))
	}
	if length != m.man.Length {
		m.opts.warn(fmt.Sprintf("length %d differs from the trained length %d; quality may suffer", length, m.man.Length))
	}
	var spans []diffusion.Span
	var used int
	if req.Prefix != "" {
		ids, err := m.encode("prefix", req.Prefix)
		if err != nil {
			return nil, err
		}
		spans = append(spans, diffusion.Span{Start: 0, Tokens: ids})
		used += len(ids)
	}
	if req.Suffix != "" {
		ids, err := m.encode("suffix", req.Suffix)
		if err != nil {
			return nil, err
		}
		used += len(ids)
		if used > length {
			return nil, fmt.Errorf("%w: prefix and suffix take %d tokens but the length is %d; shorten them or raise --length", ErrTooLong, used, length)
		}
		spans = append(spans, diffusion.Span{Start: length - len(ids), Tokens: ids})
	}
	if used > length {
		return nil, fmt.Errorf("%w: the prefix takes %d tokens but the length is %d; shorten it or raise --length", ErrTooLong, used, length)
	}
	for k, f := range req.Fixed {
		var ids []int64
		switch {
		case f.Text == "" && len(f.Tokens) == 0:
			return nil, fmt.Errorf("%w: fixed span %d has neither Text nor Tokens", ErrBadRequest, k)
		case f.Text != "" && len(f.Tokens) > 0:
			return nil, fmt.Errorf("%w: fixed span %d has both Text and Tokens; set one of them", ErrBadRequest, k)
		}
		if f.Text != "" {
			var err error
			if ids, err = m.encode(fmt.Sprintf("fixed span %d", k), f.Text); err != nil {
				return nil, err
			}
		} else {
			ids = make([]int64, len(f.Tokens))
			for i, t := range f.Tokens {
				if t < 0 || t >= m.man.Tokens {
					return nil, fmt.Errorf("%w: fixed span %d: token %d is outside [0, %d)", ErrBadRequest, k, t, m.man.Tokens)
				}
				ids[i] = int64(t)
			}
		}
		if f.Pos < 0 || f.Pos > length-len(ids) {
			return nil, fmt.Errorf("%w: fixed span %d of %d tokens at position %d does not fit in the length %d", ErrTooLong, k, len(ids), f.Pos, length)
		}
		spans = append(spans, diffusion.Span{Start: f.Pos, Tokens: ids})
	}
	r.cfg = diffusion.Config{
		Graph: m.graph, Noise: m.noise, Predictor: req.Predictor, Steps: steps, Eps: eps,
		Denoise: !req.NoDenoise, Batch: batch, Length: length, Seed: req.Seed, Fixed: spans,
	}
	r.keep = [2]int{0, length}
	return r, nil
}

func (m *Model) encode(what, text string) ([]int64, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("%w: %s is not valid UTF-8", ErrBadRequest, what)
	}
	ids, err := m.tok.Encode(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadRequest, what, err)
	}
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out, nil
}

// Sample draws req.Batch sequences from the model with the reverse diffusion
// of SEDD.md. It honours ctx inside a network evaluation: a cancelled context
// stops the run within one forward pass and leaves the Model usable.
func (m *Model) Sample(ctx context.Context, req SampleRequest) (*SampleResult, error) {
	r, err := m.resolve(req)
	if err != nil {
		return nil, err
	}
	return m.run(ctx, r)
}

func (m *Model) run(ctx context.Context, r *resolved) (*SampleResult, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	start := time.Now()
	cfg := r.cfg
	mask := m.Mask()
	if r.req.Progress != nil {
		cb := r.req.Progress
		cfg.Progress = func(s diffusion.Step) error {
			masked := 0
			if mask >= 0 {
				for _, t := range s.Tokens {
					if t == mask {
						masked++
					}
				}
			}
			return cb(Progress{Step: s.Index, Steps: s.Steps, T: s.T, Batch: s.Batch, Length: s.Length, Tokens: s.Tokens, Masked: masked})
		}
	}
	sampler, err := diffusion.NewSampler(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	sc, err := m.scorer()
	if err != nil {
		return nil, err
	}
	timed := &timedScore{sc: sc}
	tokens, err := sampler.Run(ctx, timed)
	m.release(sc)
	if se := (*diffusion.ScoreError)(nil); errors.As(err, &se) {
		return nil, fmt.Errorf("%w (the network's output cannot be sampled from; check the export with Verify, or sedd verify)", err)
	}
	if err != nil {
		return nil, err
	}
	res := &SampleResult{
		Steps: cfg.Steps, NFE: cfg.Steps, Predictor: cfg.Predictor, Denoise: cfg.Denoise,
		Eps: cfg.Eps, Seed: cfg.Seed, Length: r.keep[1] - r.keep[0], Network: timed.elapsed,
	}
	if cfg.Denoise {
		res.NFE++
	}
	if cfg.Eps == 0 {
		res.Eps = diffusion.DefaultEps
	}
	for b := 0; b < cfg.Batch; b++ {
		row := tokens[b*cfg.Length+r.keep[0] : b*cfg.Length+r.keep[1]]
		ids := make([]int, len(row))
		for i, t := range row {
			ids[i] = int(t)
		}
		res.Samples = append(res.Samples, Sample{Index: b, Tokens: ids, Text: m.Render(row, "")})
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// Render decodes tokens to text, writing maskGlyph for each mask token (for
// example "_" to watch a sample denoise). Ids outside the vocabulary render as
// "�".
func (m *Model) Render(tokens []int64, maskGlyph string) string {
	mask := m.Mask()
	var out []byte
	run := make([]int, 0, len(tokens))
	flush := func() {
		if len(run) > 0 {
			s, err := m.tok.Decode(run)
			if err != nil {
				s = "\uFFFD"
			}
			out = append(out, s...)
			run = run[:0]
		}
	}
	for _, t := range tokens {
		switch {
		case t == mask:
			flush()
			out = append(out, maskGlyph...)
		case t < 0 || t >= int64(m.man.Tokens):
			flush()
			out = append(out, "\uFFFD"...)
		default:
			run = append(run, int(t))
		}
	}
	flush()
	return string(out)
}
