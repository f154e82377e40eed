package diffusion

import (
	"context"
	"fmt"
	"slices"
)

// Scores is the output of a score network for a batch of sequences: log
// ratios log p(x with x_i := j) / p(x) for every row b, position i and state j,
// and their log-sum-exp over j ≠ x_i. The entry LogScore[b][i][x_i] is 0.
//
// Scores is a view: the slices belong to whoever returned it, and nothing in
// this package writes to them, so concurrent readers are safe.
type Scores struct {
	Batch, Length, N int
	LogScore         []float32 // Batch*Length*N, row-major [b][i][j]; with Rows, len(Rows)*N
	LSE              []float32 // Batch*Length: log Σ_{j≠x_i} exp(LogScore[b][i][j]); with Rows, len(Rows)
	// Rows, when not nil, says the output is of some positions only: the
	// flat positions b*Length + i listed, strictly increasing, in that order
	// in LogScore and LSE (what a RowScoreFunc returns from ScoreRows). Nil:
	// every position.
	Rows []int32
}

// Slot returns where position i of row b is in LSE (and, times N, in
// LogScore), or -1 when s holds only some rows and not that one.
func (s Scores) Slot(b, i int) int {
	k := b*s.Length + i
	if s.Rows == nil {
		return k
	}
	if j, ok := slices.BinarySearch(s.Rows, int32(k)); ok {
		return j
	}
	return -1
}

// Row returns the N log scores of position i of row b, which must be among
// s.Rows when s holds only some rows.
func (s Scores) Row(b, i int) []float32 {
	off := s.Slot(b, i) * s.N
	return s.LogScore[off : off+s.N : off+s.N]
}

// check reports whether s has the given shape and matching slice lengths,
// for every position.
func (s Scores) check(batch, length, n int) error {
	if s.Rows != nil {
		return fmt.Errorf("got the output of %d rows; want every position", len(s.Rows))
	}
	return s.checkRows(batch, length, n, nil)
}

// checkRows is check for the output of ScoreRows asked for rows: either that
// of rows (s.Rows equal to rows) or of every position (s.Rows nil).
func (s Scores) checkRows(batch, length, n int, rows []int32) error {
	if s.Batch != batch || s.Length != length || s.N != n {
		return fmt.Errorf("got batch %d, length %d, N %d; want %d, %d, %d", s.Batch, s.Length, s.N, batch, length, n)
	}
	want := batch * length
	if s.Rows != nil {
		if !slices.Equal(s.Rows, rows) {
			return fmt.Errorf("got the output of %d rows, not of the %d asked for", len(s.Rows), len(rows))
		}
		want = len(rows)
	}
	if len(s.LogScore) != want*n || len(s.LSE) != want {
		return fmt.Errorf("got %d log scores and %d LSE values; want %d and %d", len(s.LogScore), len(s.LSE), want*n, want)
	}
	return nil
}

// CheckRows reports whether s is a valid answer of ScoreRows for the given
// shape and rows: the output of exactly those rows, or of every position.
// The error wraps ErrScoreShape.
func (s Scores) CheckRows(batch, length, n int, rows []int32) error {
	if err := s.checkRows(batch, length, n, rows); err != nil {
		return fmt.Errorf("%w: %v", ErrScoreShape, err)
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

// RowScoreFunc is a ScoreFunc that can also compute its output at some
// positions only. The samplers and the likelihood bound read the output of
// few positions (on the absorbing graph: the masked ones; the first-hitting
// sampler: one per row), and the output head, a projection to N states, is
// a large share of a network's work; a ScoreFunc that implements this
// interface is asked for those positions alone.
type RowScoreFunc interface {
	ScoreFunc
	// ScoreRows is Score with the output needed only at the flat positions
	// rows (b*length + i, strictly increasing; possibly none). It returns
	// Scores whose Rows equal rows, or the Scores of every position (Rows
	// nil), which is always a valid answer (a network that cannot select
	// rows). The returned slices, Rows included, are owned by the ScoreFunc
	// and valid until its next call; rows is not kept.
	ScoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (Scores, error)
}
