package likelihood

import (
	"context"
	"slices"
	"testing"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// rowsOf adds ScoreRows to a ScoreFunc: it evaluates every position and
// returns those asked for, recording each call's tokens and rows.
type rowsOf struct {
	diffusion.ScoreFunc
	xs      [][]int64
	asked   [][]int32
	ls, lse []float32
}

func (r *rowsOf) ScoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (diffusion.Scores, error) {
	r.xs, r.asked = append(r.xs, slices.Clone(x)), append(r.asked, slices.Clone(rows))
	full, err := r.Score(ctx, x, sigma, batch, length)
	if err != nil {
		return full, err
	}
	r.ls, r.lse = r.ls[:0], r.lse[:0]
	for _, p := range rows {
		r.ls = append(r.ls, full.LogScore[int(p)*full.N:(int(p)+1)*full.N]...)
		r.lse = append(r.lse, full.LSE[p])
	}
	return diffusion.Scores{Batch: batch, Length: length, N: full.N, LogScore: r.ls, LSE: r.lse, Rows: slices.Clone(rows)}, nil
}

// TestRowsOfEachDraw: given a RowScoreFunc, the bound asks for the masked
// positions of each draw (absorbing graph, value or pointer) and is the bound
// of every position; on the uniform graph it asks for none.
func TestRowsOfEachDraw(t *testing.T) {
	seqs := corpus(5, 12, 12, 7, 12)
	for _, tc := range []struct {
		name  string
		graph diffusion.Graph
		fake  diffusion.Graph // the graph of the closed-form model
		noise diffusion.Noise
		rows  bool
	}{
		{"absorbing", absorb5, absorb5, loglin, true},
		{"absorbing by pointer", &diffusion.Absorbing{Tokens: 5}, absorb5, loglin, true},
		{"uniform", uniform5, uniform5, geom, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Graph: tc.graph, Noise: tc.noise, Timesteps: 6, Seed: 4, BatchSize: 5}
			want, err := Evaluate(context.Background(), newIndependent(tc.fake, 12, 5, 2), seqs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			rs := &rowsOf{ScoreFunc: newIndependent(tc.fake, 12, 5, 2)}
			got, err := Evaluate(context.Background(), rs, seqs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got.Nats != want.Nats {
				t.Errorf("bound %v with rows, %v without", got.Nats, want.Nats)
			}
			if !tc.rows {
				if len(rs.asked) > 0 {
					t.Errorf("asked for rows %d times on the uniform graph", len(rs.asked))
				}
				return
			}
			if len(rs.asked) == 0 {
				t.Fatal("never asked for rows")
			}
			for c, x := range rs.xs {
				var masked []int32
				for p, v := range x {
					if v == 5 {
						masked = append(masked, int32(p))
					}
				}
				if !slices.Equal(rs.asked[c], masked) {
					t.Fatalf("call %d asked for %v, want the masked positions %v", c, rs.asked[c], masked)
				}
			}
		})
	}
}
