package diffusion

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// rowScorer adds ScoreRows to a ScoreFunc: it evaluates every position and
// returns the rows asked for, in its own buffers, and records what each call
// asked for and at which tokens. dense answers with every position instead
// (a network without the rows input); drop leaves the last asked row out (a
// broken one).
type rowScorer struct {
	ScoreFunc
	asked       [][]int32
	xs          [][]int64
	ls, lse     []float32
	rows        []int32
	dense, drop bool
}

func (r *rowScorer) ScoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (Scores, error) {
	r.asked = append(r.asked, slices.Clone(rows))
	r.xs = append(r.xs, slices.Clone(x))
	full, err := r.Score(ctx, x, sigma, batch, length)
	if err != nil || r.dense {
		return full, err
	}
	if r.drop && len(rows) > 0 {
		rows = rows[:len(rows)-1]
	}
	n := full.N
	r.ls, r.lse, r.rows = r.ls[:0], r.lse[:0], append(r.rows[:0], rows...)
	for _, p := range rows {
		r.ls = append(r.ls, full.LogScore[int(p)*n:(int(p)+1)*n]...)
		r.lse = append(r.lse, full.LSE[p])
	}
	return Scores{Batch: batch, Length: length, N: n, LogScore: r.ls, LSE: r.lse, Rows: r.rows}, nil
}

// TestRowsSameTokens: a sampler given a RowScoreFunc asks for the masked free
// positions only (first hitting: the one position each row unmasks, drawn
// before the call) and gives the tokens of the run that reads every
// position, with the same random draws; the uniform graph, and a
// time-independent batch (whose reuse merges whole rows), ask for none.
func TestRowsSameTokens(t *testing.T) {
	prefix := []Span{{Start: 0, Tokens: []int64{1, 2, 3}}}
	for _, tc := range []struct {
		name     string
		cfg      Config
		useRows  bool
		perCall1 bool // first hitting: one row per batch row
	}{
		{"analytic", Config{Graph: absorb5, Noise: logLin, Steps: 16, Denoise: true, Batch: 3, Length: 12, Seed: 1}, true, false},
		{"analytic with a prefix and a temperature", Config{Graph: absorb5, Noise: logLin, Steps: 8, Denoise: true, Batch: 2, Length: 12, Seed: 2, Fixed: prefix, Temperature: 0.8, TopK: 3}, true, false},
		{"euler", Config{Graph: absorb5, Noise: geo, Predictor: Euler, Steps: 16, Denoise: true, Batch: 2, Length: 10, Seed: 3}, true, false},
		{"analytic in blocks", Config{Graph: absorb5, Noise: logLin, Steps: 8, Denoise: true, Batch: 2, Length: 20, Window: 8, Overlap: 2, Seed: 4}, true, false},
		{"first hitting", Config{Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 4, Length: 12, Seed: 5}, true, true},
		{"first hitting with a prefix, in blocks", Config{Graph: absorb5, Noise: geo, Predictor: FirstHitting, Batch: 2, Length: 20, Window: 8, Overlap: 3, Seed: 6, Fixed: prefix}, true, true},
		{"time-independent, one row", Config{Graph: absorb5, Noise: logLin, Steps: 256, Denoise: true, Batch: 1, Length: 16, Seed: 7, TimeIndependent: true}, true, false},
		{"time-independent, three rows", Config{Graph: absorb5, Noise: logLin, Steps: 64, Denoise: true, Batch: 3, Length: 12, Seed: 8, TimeIndependent: true}, false, false},
		{"uniform graph", Config{Graph: uniform4, Noise: geo, Steps: 8, Denoise: true, Batch: 2, Length: 8, Seed: 9}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			length := tc.cfg.Length
			if tc.cfg.Window > 0 {
				length = tc.cfg.Window
			}
			want, err := sample(context.Background(), newIndependent(tc.cfg.Graph, length, 3), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, dense := range []bool{false, true} {
				rs := &rowScorer{ScoreFunc: newIndependent(tc.cfg.Graph, length, 3), dense: dense}
				got, err := sample(context.Background(), rs, tc.cfg)
				if err != nil {
					t.Fatalf("dense %v: %v", dense, err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("dense %v: tokens %v, want those of the full head %v", dense, got, want)
				}
				if !tc.useRows {
					if len(rs.asked) > 0 {
						t.Fatalf("asked for rows %d times, want never", len(rs.asked))
					}
					continue
				}
				if len(rs.asked) == 0 {
					t.Fatal("never asked for rows")
				}
				mask := absorb5.Mask()
				for c, rows := range rs.asked {
					x := rs.xs[c]
					if tc.perCall1 {
						if len(rows) != tc.cfg.Batch {
							t.Fatalf("call %d asked for %d rows, want one per row of the batch (%d)", c, len(rows), tc.cfg.Batch)
						}
						for b, p := range rows {
							if int(p)/length != b || x[p] != mask {
								t.Fatalf("call %d: row %d asked for position %d (token %d), want a masked position of its own", c, b, p, x[p])
							}
						}
						continue
					}
					var masked []int32
					for p, v := range x {
						if v == mask {
							masked = append(masked, int32(p))
						}
					}
					if !slices.Equal(rows, masked) {
						t.Fatalf("call %d asked for %v, want the masked positions %v", c, rows, masked)
					}
				}
			}
		})
	}
}

// TestRowsMissing: a RowScoreFunc that leaves out a position the sampler
// reads is an ErrScoreShape, never a read of another position's output.
func TestRowsMissing(t *testing.T) {
	for _, cfg := range []Config{
		{Graph: absorb5, Noise: logLin, Steps: 4, Batch: 2, Length: 6},
		{Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 2, Length: 6},
	} {
		rs := &rowScorer{ScoreFunc: newIndependent(absorb5, 6, 1), drop: true}
		if _, err := sample(context.Background(), rs, cfg); !errors.Is(err, ErrScoreShape) {
			t.Errorf("%v: %v, want ErrScoreShape", cfg.Predictor, err)
		}
	}
}

// TestRowsScoreEntropy: SequenceScoreEntropy of the masked rows alone is that
// of every row; without a masked row it reads is ErrScoreShape.
func TestRowsScoreEntropy(t *testing.T) {
	const length = 8
	f := newIndependent(absorb5, length, 2)
	x0 := []int64{0, 1, 2, 3, 0, 1, 2, 3}
	xt := []int64{0, 4, 2, 4, 4, 1, 2, 4}
	sigma := []float32{0.7}
	full, err := f.Score(context.Background(), xt, sigma, 1, length)
	if err != nil {
		t.Fatal(err)
	}
	want, err := SequenceScoreEntropy(nil, absorb5, x0, xt, 0.7, full, 0)
	if err != nil {
		t.Fatal(err)
	}
	rs := &rowScorer{ScoreFunc: f}
	part, err := rs.ScoreRows(context.Background(), xt, sigma, 1, length, []int32{1, 3, 4, 7})
	if err != nil {
		t.Fatal(err)
	}
	got, err := SequenceScoreEntropy(nil, absorb5, x0, xt, 0.7, part, 0)
	if err != nil || got != want {
		t.Errorf("masked rows only: %v, %v; want %v", got, err, want)
	}
	part, _ = rs.ScoreRows(context.Background(), xt, sigma, 1, length, []int32{1, 3, 4})
	if _, err := SequenceScoreEntropy(nil, absorb5, x0, xt, 0.7, part, 0); !errors.Is(err, ErrScoreShape) {
		t.Errorf("a masked row missing: %v, want ErrScoreShape", err)
	}
}
