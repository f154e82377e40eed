package onnxrt

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sedd-go/sedd/sdk/internal/golden"
)

// rowsFixture is a committed export whose graph takes the rows input
// (export.py --random-init tiny --time-independent --seed 3; its README.md).
const rowsFixture = "../../testdata/tiny-absorb-ti"

// TestScoreRowsGolden: on a graph with the rows input, ScoreRows computes the
// asked positions alone (Scores.Rows) with PyTorch's values at them, within
// the golden tolerance, for every golden case and several sets of rows; Score
// still gives every position. On a graph without the input (an older export),
// ScoreRows is Score.
func TestScoreRowsGolden(t *testing.T) {
	needLibrary(t)
	s, _, cases := open(t, rowsFixture)
	if !s.Rows() {
		t.Fatalf("%s: the graph has no %q input; export it again", rowsFixture, InputRows)
	}
	sc := newScorer(t, s)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		n := c.Batch * c.Length
		sets := [][]int32{{int32(n - 1)}, {0}}
		var masked, some []int32
		for p, v := range c.Indices {
			if v == int64(c.N-1) {
				masked = append(masked, int32(p))
			}
			if r.IntN(3) == 0 {
				some = append(some, int32(p))
			}
		}
		sets = append(sets, masked, some)
		for _, rows := range sets {
			got, err := sc.ScoreRows(ctx, c.Indices, c.Sigma, c.Batch, c.Length, rows)
			if err != nil {
				t.Fatalf("%s, rows %v: %v", c.Name, rows, err)
			}
			if !slices.Equal(got.Rows, rows) || len(got.LogScore) != len(rows)*c.N || len(got.LSE) != len(rows) {
				t.Fatalf("%s: got rows %v with %d log scores and %d LSE values; want rows %v", c.Name, got.Rows, len(got.LogScore), len(got.LSE), rows)
			}
			if len(rows) == 0 {
				continue
			}
			res, err := golden.CheckRows(c, rows, got.LogScore, got.LSE)
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK(golden.Tolerance) {
				t.Errorf("%s, %d rows: %v", c.Name, len(rows), res)
			}
		}
		full, err := sc.Score(ctx, c.Indices, c.Sigma, c.Batch, c.Length)
		if err != nil {
			t.Fatal(err)
		}
		res, err := golden.Check(c, full.LogScore, full.LSE)
		if err != nil || full.Rows != nil || !res.OK(golden.Tolerance) {
			t.Errorf("%s, every row: %v, %v, rows %v", c.Name, res, err, full.Rows)
		}
	}

	old, _, oldCases := open(t, fixtures[0])
	if old.Rows() {
		t.Fatalf("%s has the rows input; this half of the test needs an export without it", fixtures[0])
	}
	c := oldCases[0]
	got, err := newScorer(t, old).ScoreRows(ctx, c.Indices, c.Sigma, c.Batch, c.Length, []int32{0})
	if err != nil || got.Rows != nil || len(got.LSE) != c.Batch*c.Length {
		t.Errorf("ScoreRows without the rows input: rows %v, %d LSE values, %v; want every position", got.Rows, len(got.LSE), err)
	}
}

// TestScoreRowsRejectsBadRows: rows out of range, repeated or out of order
// are refused with ErrInput before ONNX Runtime sees them; no rows costs no
// forward pass.
func TestScoreRowsRejectsBadRows(t *testing.T) {
	needLibrary(t)
	s, _, cases := open(t, rowsFixture)
	sc := newScorer(t, s)
	c := cases[len(cases)-1]
	n := int32(c.Batch * c.Length)
	for _, rows := range [][]int32{{-1}, {n}, {3, 3}, {4, 2}, {0, n + 7}} {
		if _, err := sc.ScoreRows(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length, rows); !errors.Is(err, ErrInput) {
			t.Errorf("rows %v: %v, want ErrInput", rows, err)
		}
	}
	got, err := sc.ScoreRows(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length, []int32{})
	if err != nil || got.Rows == nil || len(got.Rows)+len(got.LSE)+len(got.LogScore) != 0 {
		t.Errorf("no rows: %+v, %v; want empty scores", got, err)
	}
}

// TestScoreRowsSteadyAllocs: asking for the same number of rows again
// recreates no tensor, so the call allocates nothing, as Score.
func TestScoreRowsSteadyAllocs(t *testing.T) {
	needLibrary(t)
	s, _, cases := open(t, rowsFixture)
	sc := newScorer(t, s)
	c := cases[len(cases)-1]
	rows := []int32{1, 5, 9}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := sc.ScoreRows(ctx, c.Indices, c.Sigma, c.Batch, c.Length, rows); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("steady-state ScoreRows allocates %v times per call, want 0", allocs)
	}
}
