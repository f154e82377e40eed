package likelihood

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// GPT-2 sizes: 50257 tokens (N = 50258 with the mask), length 1024.
const benchTokens, benchLength = 50257, 1024

// precomputed is a ScoreFunc that returns the same Scores whatever it is
// asked, standing in for the network so that only the Go work is timed.
type precomputed struct{ sc diffusion.Scores }

func (p *precomputed) Score(_ context.Context, _ []int64, _ []float32, batch, length int) (diffusion.Scores, error) {
	sc := p.sc
	sc.Batch, sc.Length = batch, length
	sc.LogScore = sc.LogScore[:batch*length*sc.N]
	sc.LSE = sc.LSE[:batch*length]
	return sc, nil
}

func newPrecomputed(b *testing.B, n, batch int) *precomputed {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	ls := make([]float32, batch*benchLength*n)
	for i := range ls {
		ls[i] = float32(r.NormFloat64()) - 11
	}
	lse := make([]float32, batch*benchLength)
	for i := range lse {
		lse[i] = float32(r.NormFloat64())
	}
	return &precomputed{diffusion.Scores{Batch: batch, Length: benchLength, N: n, LogScore: ls, LSE: lse}}
}

func benchSequence(tokens int) []int64 {
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]int64, benchLength)
	for i := range x {
		x[i] = r.Int64N(int64(tokens))
	}
	return x
}

// BenchmarkStep times the Go work of one evaluation row besides the network:
// draw t, corrupt the sequence, and compute σ'(t)·Σ_i ℓ_i from the scores.
// Absorbing: O(length) through log_score_lse. Uniform: O(length·N).
func BenchmarkStep(b *testing.B) {
	for _, tc := range []struct {
		name  string
		graph diffusion.Graph
		noise diffusion.Noise
	}{
		{"absorb", diffusion.Absorbing{Tokens: benchTokens}, diffusion.LogLinear{Eps: 1e-3}},
		{"uniform", diffusion.Uniform{Tokens: benchTokens}, diffusion.Geometric{SigmaMin: 1e-4, SigmaMax: 20}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := newPrecomputed(b, tc.graph.States(), 1)
			x0 := benchSequence(benchTokens)
			cfg, err := Config{Graph: tc.graph, Noise: tc.noise, Timesteps: 1000}.resolved()
			if err != nil {
				b.Fatal(err)
			}
			e := newEvaluator(cfg, [][]int64{x0})
			st := newStream()
			r := row{xt: make([]int64, benchLength)}
			k := 0
			b.ReportAllocs()
			for b.Loop() {
				r.k = k % cfg.Timesteps
				k++
				if err := e.prepare(&r, st); err != nil {
					b.Fatal(err)
				}
				if err := e.loss(&r, p.sc, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*benchLength)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkEvaluate times Evaluate around a score function that costs
// nothing: the packing, corruption, loss and bookkeeping of 8 rows of one
// sequence per operation, in batches of 4, on the absorbing graph.
func BenchmarkEvaluate(b *testing.B) {
	g := diffusion.Absorbing{Tokens: benchTokens}
	p := newPrecomputed(b, g.States(), 4)
	seqs := [][]int64{benchSequence(benchTokens)}
	cfg := Config{Graph: g, Noise: diffusion.LogLinear{Eps: 1e-3}, Timesteps: 8, BatchSize: 4}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Evaluate(context.Background(), p, seqs, cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*cfg.Timesteps*benchLength)/b.Elapsed().Seconds(), "tokens/s")
}
