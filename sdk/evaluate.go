package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/sedd-go/sedd/sdk/likelihood"
)

// DefaultEvalTimesteps is the number of Monte-Carlo timesteps per window when
// an EvalRequest leaves Timesteps 0. The paper uses about 1000; 64 gives a
// bound whose standard error is reported alongside it.
const DefaultEvalTimesteps = 64

// EvalRequest describes one likelihood evaluation of a text.
type EvalRequest struct {
	// Timesteps is K, the Monte-Carlo timesteps per window; 0 means
	// DefaultEvalTimesteps; at most likelihood.MaxTimesteps. At least 2 are
	// needed for a standard error.
	Timesteps int
	// Sampling spreads the timesteps (likelihood.Stratified, the default, or
	// likelihood.Antithetic).
	Sampling likelihood.Sampling
	// Eps is the lower end of the time integral; 0 means likelihood.DefaultEps.
	Eps float64
	// Seed fixes every random draw.
	Seed uint64
	// BatchSize bounds the rows per network evaluation; 0 means
	// likelihood.DefaultBatchSize. BatchSize × Length × N must not exceed
	// MaxScoreElements.
	BatchSize int
	// Length is the window length in tokens; 0 means the trained length, and
	// at most MaxLengthFactor times the trained length is allowed.
	Length int
	// Last says whether a final window shorter than Length is kept (the
	// default) or dropped (the paper's protocol).
	Last likelihood.LastWindow
	// Progress, if set, is called after each network evaluation with the rows
	// done and the total; returning an error stops the evaluation.
	Progress func(done, total int) error
}

// Evaluate estimates the likelihood bound (negative ELBO) of documents under
// the model: each document is tokenized, the tokenizer's end-of-text token
// (when it has one) is appended to each, the token stream is cut into
// non-overlapping windows of req.Length tokens, and every window is scored
// with likelihood.Evaluate. Result.Sequences holds one bound per window, in
// order. Errors: ErrBadRequest for invalid fields, an empty text or no window
// left to score, the errors of likelihood.Evaluate, and ctx's.
func (m *Model) Evaluate(ctx context.Context, documents []string, req EvalRequest) (*likelihood.Result, error) {
	switch {
	case req.Timesteps == 0:
		req.Timesteps = DefaultEvalTimesteps
	case req.Timesteps < 0:
		return nil, fmt.Errorf("%w: timesteps must be ≥ 1, got %d", ErrBadRequest, req.Timesteps)
	}
	length := req.Length
	switch {
	case length == 0:
		length = m.man.Length
	case length < 0:
		return nil, fmt.Errorf("%w: length must be ≥ 1, got %d", ErrBadRequest, length)
	}
	if req.Eps != 0 && !(req.Eps > 0 && req.Eps < 1) {
		return nil, fmt.Errorf("%w: eps must be in (0, 1), got %g", ErrBadRequest, req.Eps)
	}
	if maxLen := MaxLengthFactor * m.man.Length; length > maxLen {
		return nil, fmt.Errorf("%w: length %d is more than %d times the trained length %d; the network's attention grows with its square",
			ErrBadRequest, length, MaxLengthFactor, m.man.Length)
	}
	if req.Timesteps > likelihood.MaxTimesteps {
		return nil, fmt.Errorf("%w: timesteps must be ≤ %d, got %d", ErrBadRequest, likelihood.MaxTimesteps, req.Timesteps)
	}
	// length is bounded above, so the product cannot overflow once the batch
	// size is below 2^24.
	if req.BatchSize < 0 || req.BatchSize > 1<<24 || int64(req.BatchSize)*int64(length)*int64(m.man.N()) > MaxScoreElements {
		return nil, fmt.Errorf("%w: batch size %d: must be ≥ 0 (0: the default), and batch size × length × %d states at most %d scores",
			ErrBadRequest, req.BatchSize, m.man.N(), int64(MaxScoreElements))
	}
	docs := make([][]int64, 0, len(documents))
	for i, d := range documents {
		ids, err := m.encode(fmt.Sprintf("document %d", i), d)
		if err != nil {
			return nil, err
		}
		docs = append(docs, ids)
	}
	eos := int64(-1)
	if id := m.man.Tokenizer.EOSID; id >= 0 && id < m.man.Tokens {
		eos = int64(id)
	}
	windows, err := likelihood.Windows(likelihood.JoinDocuments(docs, eos), length, req.Last)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if len(windows) == 0 {
		if len(docs) == 0 || eos < 0 && len(likelihood.JoinDocuments(docs, eos)) == 0 {
			return nil, fmt.Errorf("%w: nothing to evaluate: the text is empty", ErrBadRequest)
		}
		return nil, fmt.Errorf("%w: the text is shorter than one window of %d tokens, and short windows are dropped; keep them or lower the length", ErrBadRequest, length)
	}
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	sc, err := m.scorer()
	if err != nil {
		return nil, err
	}
	defer m.release(sc)
	res, err := likelihood.Evaluate(ctx, sc, windows, likelihood.Config{
		Graph: m.graph, Noise: m.noise, Timesteps: req.Timesteps, Sampling: req.Sampling,
		Eps: req.Eps, Seed: req.Seed, BatchSize: req.BatchSize, Progress: req.Progress,
	})
	if errors.Is(err, likelihood.ErrInvalidConfig) {
		// An odd Timesteps with antithetic sampling, an unknown Sampling.
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return res, err
}
