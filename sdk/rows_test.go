package sdk_test

// Rows on demand through ONNX Runtime: a network with the rows input
// (ONNX-CONTRACT.md) asked for the positions the samplers and the bound read
// gives the tokens and the bound of the full output head.

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/likelihood"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
)

// tinyRows is the committed tiny export whose graph takes the rows input.
const tinyRows = "testdata/tiny-absorb-ti"

// fullHead hides ScoreRows: the samplers and the bound then ask for every
// position.
type fullHead struct{ sc diffusion.ScoreFunc }

func (f fullHead) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	return f.sc.Score(ctx, x, sigma, batch, length)
}

// rowCounter passes ScoreRows on and counts the rows the network computed.
type rowCounter struct {
	*onnxrt.Scorer
	calls, rows, positions int
}

func (r *rowCounter) ScoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (diffusion.Scores, error) {
	s, err := r.Scorer.ScoreRows(ctx, x, sigma, batch, length, rows)
	if err == nil && s.Rows != nil {
		r.calls++
		r.rows += len(s.Rows)
		r.positions += batch * length
	}
	return s, err
}

func TestRowsOnDemandSameTokensAndBound(t *testing.T) {
	man, err := manifest.Load(tinyRows)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := onnxrt.Open(tinyRows, man, onnxrt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if !sess.Rows() {
		t.Fatalf("%s: the graph has no rows input; export it again", tinyRows)
	}
	scorer, err := sess.NewScorer()
	if err != nil {
		t.Fatal(err)
	}
	defer scorer.Close()
	g, noise, err := man.Diffusion()
	if err != nil {
		t.Fatal(err)
	}
	L := man.Length
	base := diffusion.Config{Graph: g, Noise: noise, Steps: 32, Denoise: true, Batch: 4, Length: L, Seed: 11}
	prefix := []diffusion.Span{{Start: 0, Tokens: []int64{'T', 'h', 'e', ' '}}}
	for _, tc := range []struct {
		name string
		edit func(*diffusion.Config)
	}{
		{"analytic", func(*diffusion.Config) {}},
		{"analytic 128 steps with a prefix", func(c *diffusion.Config) { c.Steps, c.Fixed = 128, prefix }},
		{"euler", func(c *diffusion.Config) { c.Predictor = diffusion.Euler }},
		{"first hitting", func(c *diffusion.Config) { c.Predictor = diffusion.FirstHitting }},
		{"analytic in blocks", func(c *diffusion.Config) { c.Length, c.Window, c.Overlap = 2*L, L, L/4 }},
		{"time-independent reuse, one row", func(c *diffusion.Config) { c.Steps, c.Batch, c.TimeIndependent = 256, 1, true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			run := func(score diffusion.ScoreFunc) []int64 {
				s, err := diffusion.NewSampler(cfg)
				if err != nil {
					t.Fatal(err)
				}
				x, err := s.Run(context.Background(), score)
				if err != nil {
					t.Fatal(err)
				}
				return x
			}
			want := run(fullHead{scorer})
			rc := &rowCounter{Scorer: scorer}
			got := run(rc)
			if rc.calls == 0 {
				t.Fatal("the network was never asked for some rows only")
			}
			t.Logf("%d calls computed the head on %d of %d positions (%.1f %%)", rc.calls, rc.rows, rc.positions, 100*float64(rc.rows)/float64(rc.positions))
			if rc.rows >= rc.positions {
				t.Errorf("the head ran on %d rows of %d positions: no saving", rc.rows, rc.positions)
			}
			if !slices.Equal(got, want) {
				t.Errorf("tokens with rows on demand differ from the full head's:\n%v\n%v", got, want)
			}
		})
	}

	t.Run("bound", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		text := make([]int64, 3*L+7)
		for i := range text {
			text[i] = int64(32 + r.IntN(95))
		}
		windows, err := likelihood.Windows(text, L, likelihood.KeepShort)
		if err != nil {
			t.Fatal(err)
		}
		cfg := likelihood.Config{Graph: g, Noise: noise, Timesteps: 32, Seed: 1, BatchSize: 16}
		want, err := likelihood.Evaluate(context.Background(), fullHead{scorer}, windows, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rc := &rowCounter{Scorer: scorer}
		got, err := likelihood.Evaluate(context.Background(), rc, windows, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("bound %.9g nats (full head %.9g); %d calls computed the head on %d of %d positions", got.Nats, want.Nats, rc.calls, rc.rows, rc.positions)
		if rc.calls == 0 || rc.rows >= rc.positions {
			t.Fatalf("rows asked: %d calls, %d rows of %d positions", rc.calls, rc.rows, rc.positions)
		}
		// Each draw's loss sums float32 network outputs that agree within the
		// golden tolerance (1e-4 relative), so the bound does too.
		if d := math.Abs(got.Nats - want.Nats); d > 1e-4*math.Abs(want.Nats) {
			t.Errorf("bound %v with rows on demand, %v with the full head", got.Nats, want.Nats)
		}
		for i := range got.Sequences {
			if d := math.Abs(got.Sequences[i].Nats - want.Sequences[i].Nats); d > 1e-4*math.Abs(want.Sequences[i].Nats) {
				t.Errorf("window %d: %v with rows on demand, %v with the full head", i, got.Sequences[i].Nats, want.Sequences[i].Nats)
			}
		}
	})
}
