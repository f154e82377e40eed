package diffusion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// unmaskGolden mirrors testdata/unmask.json, written by
// export/make_unmask_golden.py (numpy, independent of this package).
type unmaskGolden struct {
	Format int `json:"format"`
	Cases  []struct {
		Name        string    `json:"name"`
		Why         string    `json:"why"`
		LogScore    []any     `json:"log_score"` // numbers, or "-inf"
		Temperature float64   `json:"temperature"`
		TopK        int       `json:"top_k"`
		TopP        float64   `json:"top_p"`
		Probs       []float64 `json:"probs"`
	} `json:"cases"`
}

func loadUnmaskGolden(t *testing.T) unmaskGolden {
	t.Helper()
	data, err := os.ReadFile("testdata/unmask.json")
	if err != nil {
		t.Fatal(err)
	}
	var g unmaskGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if g.Format != 1 || len(g.Cases) == 0 {
		t.Fatalf("unmask.json: format %d, %d cases", g.Format, len(g.Cases))
	}
	return g
}

func goldenRow(t *testing.T, v []any) []float32 {
	t.Helper()
	row := make([]float32, len(v))
	for j, x := range v {
		switch x := x.(type) {
		case float64:
			row[j] = float32(x)
		case string:
			if x != "-inf" {
				t.Fatalf("log score %q", x)
			}
			row[j] = float32(math.Inf(-1))
		default:
			t.Fatalf("log score %v", x)
		}
	}
	return row
}

// TestUnmaskFilterGolden: the filtered distributions equal numpy's to 1e-9.
func TestUnmaskFilterGolden(t *testing.T) {
	for _, c := range loadUnmaskGolden(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			row := goldenRow(t, c.LogScore)
			f := newUnmaskFilter(c.Temperature, c.TopK, c.TopP, len(row))
			if f == nil {
				t.Fatal("no filter for a case that changes the law")
			}
			total, _, ok := f.weights(row)
			if !ok {
				t.Fatal("weights failed")
			}
			for j, want := range c.Probs {
				if got := f.w[j] / total; !closeRel(got, want, 1e-9, 1e-15) {
					t.Errorf("p[%d] = %.17g, want %.17g (%s)", j, got, want, c.Why)
				}
			}
		})
	}
}

// TestUnmaskFilterDraws: the draws follow the filtered law (χ² at level
// 1e-6), dropped tokens are never drawn, and one uniform is used per draw,
// as without a filter.
func TestUnmaskFilterDraws(t *testing.T) {
	row := []float32{-1, 0.5, 0.2, float32(math.Inf(-1)), 1.5, 0.5, -3, 0.9}
	lse := float64(lseOf(row, -1))
	for _, set := range []struct {
		temp float64
		k    int
		p    float64
	}{{0.6, 0, 0}, {1, 3, 0}, {1, 0, 0.7}, {1.8, 5, 0.85}} {
		t.Run(fmt.Sprintf("T%v-k%d-p%v", set.temp, set.k, set.p), func(t *testing.T) {
			f := newUnmaskFilter(set.temp, set.k, set.p, len(row))
			total, _, _ := f.weights(row)
			want := make([]float64, len(row))
			for j := range want {
				want[j] = f.w[j] / total
			}
			const n = 40000
			r := rand.New(rand.NewPCG(1, 2))
			ref := rand.New(rand.NewPCG(1, 2))
			cum := make([]float64, len(row))
			counts := make([]int, len(row))
			for range n {
				tok, _, ok := drawUnmask(f, r, row, lse, cum)
				if !ok {
					t.Fatal("draw failed")
				}
				counts[tok]++
				ref.Float64()
			}
			if r.Uint64() != ref.Uint64() {
				t.Errorf("a filtered draw does not use exactly one uniform")
			}
			for j, p := range want {
				if p == 0 && counts[j] > 0 {
					t.Errorf("token %d, dropped, drawn %d times", j, counts[j])
				}
			}
			if stat, df := chiSquare(counts, want, n); stat > chiSquareCritical(df) {
				t.Errorf("χ² = %.1f: counts %v, want %v", stat, counts, want)
			}
		})
	}
}

// TestUnmaskFilterOff: settings that change nothing make no filter, so the
// default draws (and every golden and pinned token) stay as they were.
func TestUnmaskFilterOff(t *testing.T) {
	for _, set := range [][3]float64{{0, 0, 0}, {1, 0, 0}, {0, 4, 0}, {0, 9, 1}, {1, 100, 1}} {
		if f := newUnmaskFilter(set[0], int(set[1]), set[2], 4); f != nil {
			t.Errorf("%v: a filter that changes nothing", set)
		}
	}
}

// TestSampleWithUnmaskFilter runs every absorbing sampler with the knobs on:
// top-k 1 makes every unmasked token the position's most likely one under the
// independent model; and the same seed gives the same tokens.
func TestSampleWithUnmaskFilter(t *testing.T) {
	const length = 5
	f := newIndependent(absorb5, length, 8)
	best := make([]int64, length)
	for i, p := range f.pi {
		best[i] = int64(slices.Index(p, slices.Max(p)))
	}
	for _, pred := range []Predictor{Analytic, Euler, None, FirstHitting} {
		t.Run(pred.String(), func(t *testing.T) {
			cfg := Config{Graph: absorb5, Noise: logLin, Predictor: pred, Steps: 8, Denoise: true, Batch: 6, Length: length, Seed: 4, TopK: 1}
			out, err := sample(context.Background(), f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for b := range cfg.Batch {
				if got := out[b*length : (b+1)*length]; !slices.Equal(got, best) {
					t.Errorf("row %d = %v, want the most likely tokens %v", b, got, best)
				}
			}
			cfg.TopK, cfg.Temperature, cfg.TopP = 0, 0.7, 0.9
			a, err := sample(context.Background(), f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := sample(context.Background(), f, cfg)
			if !slices.Equal(a, b) {
				t.Errorf("the same seed gives other tokens")
			}
		})
	}
}

func TestUnmaskFilterErrors(t *testing.T) {
	ok := Config{Graph: absorb5, Noise: logLin, Steps: 4, Batch: 1, Length: 8}
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"negative temperature", func(c *Config) { c.Temperature = -1 }},
		{"NaN temperature", func(c *Config) { c.Temperature = math.NaN() }},
		{"infinite temperature", func(c *Config) { c.Temperature = math.Inf(1) }},
		{"negative top-k", func(c *Config) { c.TopK = -2 }},
		{"top-p above 1", func(c *Config) { c.TopP = 1.5 }},
		{"negative top-p", func(c *Config) { c.TopP = -0.1 }},
		{"NaN top-p", func(c *Config) { c.TopP = math.NaN() }},
		{"uniform graph", func(c *Config) { c.Graph, c.Noise, c.Temperature = uniform4, geo, 0.5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			if _, err := NewSampler(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewSampler = %v, want ErrInvalidConfig", err)
			}
		})
	}
	f := newIndependent(absorb5, 4, 1)
	f.after = func(call int, sc *Scores) {
		for b := range 2 {
			for i := range 4 {
				sc.Row(b, i)[1] = float32(math.NaN())
			}
		}
	}
	_, err := sample(context.Background(), f, Config{Graph: absorb5, Noise: logLin, Steps: 3, Denoise: true, Batch: 2, Length: 4, TopP: 0.5})
	if !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN log score with top-p: %v, want ErrNonFinite", err)
	}
}

func TestUnmaskFilterAllocs(t *testing.T) {
	assertRunAllocs(t, Config{Graph: absorb5, Noise: logLin, Steps: 16, Denoise: true, Batch: 2, Length: 32, Temperature: 0.8, TopK: 3, TopP: 0.9}, 32)
}
