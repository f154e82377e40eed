package diffusion

import (
	"context"
	"fmt"
)

// Scores is the output of a score network for a batch of sequences: log
// ratios log p(x with x_i := j) / p(x) for every row b, position i and state j,
// and their log-sum-exp over j ≠ x_i. The entry LogScore[b][i][x_i] is 0.
//
// Scores is a view: the slices belong to whoever returned it, and nothing in
// this package writes to them, so concurrent readers are safe.
type Scores struct {
	Batch, Length, N int
	LogScore         []float32 // Batch*Length*N, row-major [b][i][j]
	LSE              []float32 // Batch*Length: log Σ_{j≠x_i} exp(LogScore[b][i][j])
}

// Row returns the N log scores of position i of row b.
func (s Scores) Row(b, i int) []float32 {
	off := (b*s.Length + i) * s.N
	return s.LogScore[off : off+s.N : off+s.N]
}

// check reports whether s has the given shape and matching slice lengths.
func (s Scores) check(batch, length, n int) error {
	if s.Batch != batch || s.Length != length || s.N != n {
		return fmt.Errorf("got batch %d, length %d, N %d; want %d, %d, %d", s.Batch, s.Length, s.N, batch, length, n)
	}
	if len(s.LogScore) != batch*length*n || len(s.LSE) != batch*length {
		return fmt.Errorf("got %d log scores and %d LSE values; want %d and %d", len(s.LogScore), len(s.LSE), batch*length*n, batch*length)
	}
	return nil
}

// ScoreFunc evaluates the score network. x holds batch*length token ids, sigma
// one σ per row. The returned slices are owned by the ScoreFunc and valid until
// its next call. Score must not modify x or sigma or keep them after it returns,
// and should stop early when ctx is done. A Sampler calls it from one goroutine
// at a time; sharing one ScoreFunc between Samplers running concurrently needs
// an implementation that is safe for that.
type ScoreFunc interface {
	Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (Scores, error)
}
