package sdk

import (
	"context"
	"fmt"
	"math"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/likelihood"
)

// defaultEvalTimesteps is the number of Monte-Carlo timesteps per window when
// an EvaluateRequest leaves Timesteps 0. The paper uses about 1000; 64 gives
// a bound whose standard error is reported alongside it.
const defaultEvalTimesteps = 64

// Timestep samplings of EvaluateRequest.Sampling.
const (
	// Stratified draws one timestep in each of K equal strata of
	// (MinTime, 1) (the default).
	Stratified = "stratified"
	// Antithetic draws K/2 timesteps and their mirror images; K must be even.
	Antithetic = "antithetic"
)

// EvaluateRequest describes one likelihood evaluation.
type EvaluateRequest struct {
	// Documents are the texts to score. Each is tokenized and followed by
	// the tokenizer's end-of-text token (when it has one); the token stream
	// is cut into windows of Length tokens. Empty documents are skipped.
	Documents []string
	// Timesteps is K, the Monte-Carlo timesteps per window; 0 means 64 (the
	// paper uses about 1000). At least 2 are needed for a standard error.
	Timesteps int
	// Sampling spreads the timesteps: Stratified (also "") or Antithetic.
	Sampling string
	// MinTime is the lower end of the time integral, in (0, 1); 0 means
	// 1e-3, the reference's training-time value.
	MinTime float64
	// Seed fixes every random draw.
	Seed uint64
	// BatchSize bounds the rows per network evaluation; 0 means 4.
	BatchSize int
	// Length is the window length in tokens; 0 means the trained length.
	Length int
	// DropLast drops a final window shorter than Length (the paper's
	// protocol); by default it is scored at its own length.
	DropLast bool
	// Progress, if set, is called on the calling goroutine after each
	// network evaluation with the rows done and the total. A panic in it
	// ends the evaluation with an error that carries the panic's value.
	Progress func(done, total int)
}

// Bound is a likelihood bound: the negative ELBO of some tokens (an upper
// bound on their negative log-likelihood) estimated by Monte Carlo, in nats
// and per token, with its standard error and the 95 % interval of the
// perplexity bound.
type Bound struct {
	// Tokens is the number of tokens scored.
	Tokens int `json:"tokens"`
	// Timesteps is the number of (window, timestep) draws used, each one
	// network row: EvaluateRequest.Timesteps per window.
	Timesteps int `json:"timesteps"`
	// Nats is the estimated bound on −log p(text) in nats, and NatsStdErr its
	// standard error.
	Nats       float64 `json:"nats"`
	NatsStdErr float64 `json:"nats_stderr"`
	// NatsPerToken is Nats/Tokens, and StdErr its standard error.
	NatsPerToken float64 `json:"nats_per_token"`
	StdErr       float64 `json:"stderr"`
	// Perplexity is the perplexity bound exp(NatsPerToken), and
	// [PerplexityLow, PerplexityHigh] = exp(NatsPerToken ∓ 1.96·StdErr) its
	// 95 % Monte-Carlo interval.
	Perplexity     float64 `json:"perplexity"`
	PerplexityLow  float64 `json:"perplexity_low"`
	PerplexityHigh float64 `json:"perplexity_high"`
}

// EvaluateResult is the outcome of Model.Evaluate: the bound of all the text,
// and one bound per window, in order.
type EvaluateResult struct {
	Bound
	Windows []Bound `json:"windows"`
}

// Evaluate estimates the likelihood bound (negative ELBO) of req.Documents
// under the model with the score-entropy estimator of SEDD.md. Errors:
// ErrBadRequest for invalid fields, no text or no window left to score,
// ErrBadModel for NaN or infinite scores, ErrClosed, and ctx's.
func (m *Model) Evaluate(ctx context.Context, req EvaluateRequest) (_ *EvaluateResult, err error) {
	defer observe(&err)
	cfg, windows, err := m.evalConfig(req)
	if err != nil {
		return nil, err
	}
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	sc, err := m.scorer()
	if err != nil {
		return nil, err
	}
	defer sc.release()
	var panicked any
	if req.Progress != nil {
		cfg.Progress = func(done, total int) (err error) {
			defer func() {
				if p := recover(); p != nil {
					panicked = p
					err = fmt.Errorf("the Progress callback panicked: %v", p)
				}
			}()
			req.Progress(done, total)
			return nil
		}
	}
	res, err := likelihood.Evaluate(ctx, &scoreCounter{m: m, sc: sc}, windows, cfg)
	if panicked != nil {
		return nil, &CallbackPanic{Value: panicked}
	}
	if err != nil {
		return nil, err
	}
	out := &EvaluateResult{Bound: Bound(res.Bound), Windows: make([]Bound, len(res.Sequences))}
	for i, b := range res.Sequences {
		out.Windows[i] = Bound(b)
	}
	return out, nil
}

// CallbackPanic is the error of a call whose callback panicked; the SDK
// recovers the panic, releases what the call held, and returns this.
type CallbackPanic struct {
	Value any
}

func (e *CallbackPanic) Error() string { return fmt.Sprintf("callback panicked: %v", e.Value) }

// evalConfig validates req and cuts the documents into windows.
func (m *Model) evalConfig(req EvaluateRequest) (likelihood.Config, [][]int64, error) {
	bad := func(format string, a ...any) (likelihood.Config, [][]int64, error) {
		return likelihood.Config{}, nil, fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, a...)...)
	}
	fail := func(err error) (likelihood.Config, [][]int64, error) { return likelihood.Config{}, nil, err }
	switch {
	case req.Timesteps == 0:
		req.Timesteps = defaultEvalTimesteps
	case req.Timesteps < 0:
		return fail(fieldError("Timesteps", "must be ≥ 1, got %d", req.Timesteps))
	case req.Timesteps > likelihood.MaxTimesteps:
		return fail(fieldError("Timesteps", "must be ≤ %d, got %d", likelihood.MaxTimesteps, req.Timesteps))
	}
	var sampling likelihood.Sampling
	switch req.Sampling {
	case "", Stratified:
		sampling = likelihood.Stratified
	case Antithetic:
		sampling = likelihood.Antithetic
		if req.Timesteps%2 != 0 {
			return fail(fieldError("Timesteps", "must be even for antithetic sampling, got %d", req.Timesteps))
		}
	default:
		return fail(fieldError("Sampling", "%q is not a sampling: use %s or %s", req.Sampling, Stratified, Antithetic))
	}
	if req.MinTime != 0 && !(req.MinTime > 0 && req.MinTime < 1) || math.IsNaN(req.MinTime) {
		return fail(fieldError("MinTime", "must be in (0, 1), got %g", req.MinTime))
	}
	length := req.Length
	switch {
	case length == 0:
		length = m.man.Length
	case length < 0:
		return fail(fieldError("Length", "must be ≥ 1, got %d", length))
	}
	batch := req.BatchSize
	switch {
	case batch == 0:
		batch = likelihood.DefaultBatchSize
	case batch < 0:
		return fail(fieldError("BatchSize", "must be ≥ 1, got %d", batch))
	}
	if err := m.checkShape(batch, length, length, diffusion.Analytic); err != nil {
		return likelihood.Config{}, nil, err
	}
	if len(req.Documents) == 0 {
		return bad("nothing to evaluate: no documents")
	}
	docs := make([][]int64, 0, len(req.Documents))
	for i, d := range req.Documents {
		ids, err := m.encode(fmt.Sprintf("document %d", i), d)
		if err != nil {
			return likelihood.Config{}, nil, err
		}
		if len(ids) > 0 {
			docs = append(docs, ids)
		}
	}
	if len(docs) == 0 {
		// Only end-of-text tokens would be scored: that is no text at all.
		return bad("nothing to evaluate: the documents are empty")
	}
	eos := int64(-1)
	if id := m.man.Tokenizer.EOSID; id >= 0 && id < m.man.Tokens {
		eos = int64(id)
	}
	last := likelihood.KeepShort
	if req.DropLast {
		last = likelihood.DropShort
	}
	windows, err := likelihood.Windows(likelihood.JoinDocuments(docs, eos), length, last)
	if err != nil {
		return likelihood.Config{}, nil, err
	}
	if len(windows) == 0 {
		return bad("the text is shorter than one window of %d tokens, and short windows are dropped; keep them or lower the length", length)
	}
	if length != m.man.Length {
		m.log.Warn("window length differs from the trained length; the bound may be loose", "length", length, "trained", m.man.Length)
	}
	cfg := likelihood.Config{
		Graph: m.graph, Noise: m.noise, Timesteps: req.Timesteps, Sampling: sampling,
		MinTime: req.MinTime, Seed: req.Seed, BatchSize: batch,
	}
	return cfg, windows, nil
}
