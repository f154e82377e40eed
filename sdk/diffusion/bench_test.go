package diffusion

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// benchScores holds one precomputed score tensor of the sedd-small shape
// (N = 50258, length 1024, batch 1: 206 MB), shared by the benchmarks.
var benchScores struct {
	n  int
	sc Scores
}

// constScores returns the same Scores on every call, like a model whose
// output tensors are reused: it costs nothing, so a benchmark of one step
// measures only the Go side of sampling.
type constScores struct{ sc Scores }

func (c constScores) Score(context.Context, []int64, []float32, int, int) (Scores, error) {
	return c.sc, nil
}

// benchmarkScores fills log scores that decay over the vocabulary, and sets
// every LSE to log 1/(e^σ - 1), the total ratio of a masked position of the
// absorbing process at σ; so the number of positions that unmask per step is
// what a real model gives (about Length·Δt/t on the log-linear schedule).
func benchmarkScores(n, length int, sigma float64) Scores {
	if benchScores.n != n {
		sc := Scores{Batch: 1, Length: length, N: n, LogScore: make([]float32, length*n), LSE: make([]float32, length)}
		for i := range length {
			row := sc.Row(0, i)
			for j := range row {
				row[j] = -8 - float32((j*7919+i)%1000)/100
			}
			row[n-1] = 0
		}
		benchScores.n, benchScores.sc = n, sc
	}
	sc := benchScores.sc
	for i := range sc.LSE {
		sc.LSE[i] = float32(-math.Log(math.Expm1(sigma)))
	}
	return sc
}

// BenchmarkStep times one sampling step on the Go side (the score network is
// a precomputed tensor) at the sedd-small shape: N = 50258, length 1024,
// batch 1, all positions masked, at t = 0.5 of 1024 steps. It reports
// tokens/s (positions advanced per second); compare ns/op with one ONNX
// forward at this shape (about 1.6 s on two CPU cores).
func BenchmarkStep(b *testing.B) {
	const length, steps = 1024, 1024
	for _, tc := range []struct {
		g    Graph
		pred Predictor
	}{
		{Absorbing{Tokens: 50257}, Analytic},
		{Absorbing{Tokens: 50257}, Euler},
		{Uniform{Tokens: 50258}, Euler},
		{Uniform{Tokens: 50258}, Analytic},
	} {
		b.Run(fmt.Sprintf("%s-%v", graphName(tc.g), tc.pred), func(b *testing.B) {
			s, err := NewSampler(Config{Graph: tc.g, Noise: LogLinear{Eps: 1e-3}, Predictor: tc.pred, Steps: steps, Batch: 1, Length: length})
			if err != nil {
				b.Fatal(err)
			}
			k := steps / 2
			var f ScoreFunc = constScores{benchmarkScores(tc.g.States(), length, s.cfg.Noise.Total(s.grid[k]))}
			s.start(true)
			start := append([]int64(nil), s.x...)
			ctx := context.Background()
			iters := 0
			for b.Loop() {
				copy(s.x, start)
				if err := s.step(ctx, f, k); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			b.ReportMetric(float64(iters*length)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func graphName(g Graph) string {
	if g.spec().absorb {
		return "absorb"
	}
	return "uniform"
}
