package diffusion

import (
	"errors"
	"fmt"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Sentinel errors. Errors returned by this package wrap one of them, so callers
// can test with errors.Is; a *ScoreError adds where a bad score appeared.
var (
	// ErrInvalidConfig marks an invalid Config, Graph, Noise, Span or argument.
	ErrInvalidConfig = kind.New(kind.ErrBadRequest, "diffusion: invalid configuration")
	// ErrNonFinite marks a NaN or +Inf in a log score or its log-sum-exp (a
	// -Inf log score is allowed: it means probability 0), or a position whose
	// next-state weights are all zero.
	ErrNonFinite = kind.New(kind.ErrBadModel, "diffusion: non-finite score")
	// ErrScoreShape marks Scores whose Batch, Length, N or slice lengths do not
	// match the request.
	ErrScoreShape = kind.New(kind.ErrBadModel, "diffusion: score has the wrong shape")
)

// ScoreError reports a bad score returned by a ScoreFunc during sampling.
// Err is ErrNonFinite or ErrScoreShape.
type ScoreError struct {
	// Step is the 1-based index of the step whose score was bad, counted like
	// Step.Index (the denoiser is step Steps+1).
	Step int
	// Row and Position locate the bad entry (both 0 for a shape error).
	Row, Position int
	// Value is the offending value (NaN, ±Inf), or 0 for a shape error.
	Value float64
	// Detail says what was wrong, for the error message.
	Detail string
	// Err is the sentinel this error wraps.
	Err error
}

// Error implements error.
func (e *ScoreError) Error() string {
	if errors.Is(e.Err, ErrScoreShape) {
		return fmt.Sprintf("%v at step %d: %s", e.Err, e.Step, e.Detail)
	}
	return fmt.Sprintf("%v at step %d, row %d, position %d: %s = %v", e.Err, e.Step, e.Row, e.Position, e.Detail, e.Value)
}

// Unwrap returns the sentinel error, ErrNonFinite or ErrScoreShape.
func (e *ScoreError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
