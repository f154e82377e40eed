package diffusion

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// independent is a closed-form score model: the data distribution makes every
// position independent, position i having the marginal pi[i] over the ordinary
// tokens. Its log scores are the exact log ratios of the forward process at
// σ, so an exact sampler reproduces pi.
type independent struct {
	g      Graph
	pi     [][]float64 // [Length][tokens], strictly positive, summing to 1
	buf    []float32
	lse    []float32
	calls  int
	rows   int                             // rows evaluated, over all calls
	before func(call int, x []int64) error // runs first; its error is returned
	after  func(call int, sc *Scores)      // may spoil the scores
}

func newIndependent(g Graph, length int, seed uint64) *independent {
	r := rand.New(rand.NewPCG(seed, 1))
	tokens := g.States()
	if sp := g.spec(); sp.absorb {
		tokens = int(sp.mask)
	}
	f := &independent{g: g, pi: make([][]float64, length)}
	for i := range f.pi {
		p := make([]float64, tokens)
		var s float64
		for j := range p {
			p[j] = 0.2 + r.Float64()
			s += p[j]
		}
		for j := range p {
			p[j] /= s
		}
		f.pi[i] = p
	}
	return f
}

func (f *independent) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (Scores, error) {
	f.calls++
	f.rows += batch
	if f.before != nil {
		if err := f.before(f.calls, x); err != nil {
			return Scores{}, err
		}
	}
	n := f.g.States()
	if cap(f.buf) < batch*length*n {
		f.buf = make([]float32, batch*length*n)
		f.lse = make([]float32, batch*length)
	}
	sc := Scores{Batch: batch, Length: length, N: n, LogScore: f.buf[:batch*length*n], LSE: f.lse[:batch*length]}
	for b := range batch {
		sig := float64(sigma[b])
		for i := range length {
			k := b*length + i
			sc.LSE[k] = f.row(sc.Row(b, i), x[k], sig, f.pi[i])
		}
	}
	if f.after != nil {
		spoiled := sc // only this copy escapes, and only when there is a hook
		f.after(f.calls, &spoiled)
		return spoiled, nil
	}
	return sc, nil
}

// row writes the log ratios log p_σ(j)/p_σ(x) of one position and returns
// their log-sum-exp over j ≠ x.
func (f *independent) row(row []float32, x int64, sigma float64, pi []float64) float32 {
	sp := f.g.spec()
	if sp.absorb {
		em1 := math.Expm1(sigma)
		if x == sp.mask {
			for j, p := range pi {
				row[j] = float32(math.Log(p) - math.Log(em1))
			}
			row[sp.mask] = 0
			return float32(-math.Log(em1))
		}
		px := pi[x]
		for j, p := range pi {
			row[j] = float32(math.Log(p / px))
		}
		row[sp.mask] = float32(math.Log(em1 / px))
		row[x] = 0
		return float32(math.Log((1-px)/px + em1/px))
	}
	keep := math.Exp(-sigma)
	n := float64(sp.n)
	px := keep*pi[x] + (1-keep)/n
	for j, p := range pi {
		row[j] = float32(math.Log((keep*p + (1-keep)/n) / px))
	}
	row[x] = 0
	return float32(math.Log((1 - px) / px))
}

// sample runs the reverse diffusion described by cfg once.
func sample(ctx context.Context, score ScoreFunc, cfg Config) ([]int64, error) {
	s, err := NewSampler(cfg)
	if err != nil {
		return nil, err
	}
	return s.Run(ctx, score)
}

// assertRunAllocs checks that a sampler built from cfg, once warmed up,
// allocates nothing per Run but its result, against an independent fake of
// the given window length.
func assertRunAllocs(t *testing.T, cfg Config, window int) {
	t.Helper()
	s, err := NewSampler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := newIndependent(absorb5, window, 1)
	if _, err := s.Run(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(5, func() {
		if _, err := s.Run(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("Run allocates %v times, want only its result", n)
	}
}
