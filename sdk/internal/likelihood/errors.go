package likelihood

import (
	"fmt"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Sentinel errors, matched with errors.Is. A *ScoreError also matches the
// sentinel of package diffusion that it wraps (diffusion.ErrNonFinite or
// diffusion.ErrScoreShape).
var (
	// ErrInvalidConfig marks a Config that cannot be evaluated: nil or invalid
	// graph or noise, Timesteps ≤ 0 or > MaxTimesteps, more than MaxDraws
	// (sequence, timestep) pairs, an odd Timesteps with Antithetic
	// sampling, MinTime outside (0, 1), a negative BatchSize, an unknown Sampling,
	// or no sequences or an empty sequence.
	ErrInvalidConfig = kind.New(kind.ErrBadRequest, "likelihood: invalid configuration")
	// ErrBadToken marks a clean token outside the graph's data tokens: [0,
	// Tokens) for the absorbing graph (the mask is not a data token), [0, N)
	// for the uniform graph.
	ErrBadToken = kind.New(kind.ErrBadRequest, "likelihood: token out of range")
)

// TokenError reports a clean token that the graph cannot hold. It wraps
// ErrBadToken.
type TokenError struct {
	// Sequence and Position locate the token in the input of Evaluate.
	Sequence, Position int
	// Token is the offending id, Limit the first id that is not allowed.
	Token, Limit int64
}

// Error implements error.
func (e *TokenError) Error() string {
	return fmt.Sprintf("%v: sequence %d, position %d: token %d, want 0 ≤ token < %d", ErrBadToken, e.Sequence, e.Position, e.Token, e.Limit)
}

// Unwrap returns ErrBadToken.
func (e *TokenError) Unwrap() error { return ErrBadToken }

// ScoreError reports a score from the ScoreFunc that the estimator cannot use:
// a NaN or +Inf log score or log-sum-exp, a score entropy that is not finite
// (for example a log score of -Inf at the clean token), or Scores of the wrong
// shape. Err says which and where in the row; it wraps diffusion.ErrNonFinite
// or diffusion.ErrScoreShape.
type ScoreError struct {
	// Sequence is the index of the sequence in the input of Evaluate, Timestep
	// the index k of its draw (0 ≤ k < Timesteps).
	Sequence, Timestep int
	// T and Sigma are the diffusion time of that draw and σ(T).
	T, Sigma float64
	// Err is the underlying error.
	Err error
}

// Error implements error.
func (e *ScoreError) Error() string {
	return fmt.Sprintf("likelihood: sequence %d, timestep %d (t = %.6g, sigma = %.6g): %v", e.Sequence, e.Timestep, e.T, e.Sigma, e.Err)
}

// Unwrap returns the underlying error.
func (e *ScoreError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
