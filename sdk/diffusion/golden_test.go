package diffusion

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// refmath mirrors testdata/refmath.json, written by export/make_math_golden.py
// from the float64 PyTorch restatement of the reference (export/seddpy/refmath.py).
type refmath struct {
	Format      int                `json:"format"`
	NoiseCases  []goldenNoise      `json:"noise"`
	Transitions []goldenTransition `json:"transitions"`
	Entropy     []goldenEntropy    `json:"score_entropy"`
}

type goldenNoiseSpec struct {
	Type     string  `json:"type"`
	Eps      float64 `json:"eps"`
	SigmaMin float64 `json:"sigma_min"`
	SigmaMax float64 `json:"sigma_max"`
}

type goldenNoise struct {
	Name  string          `json:"name"`
	Noise goldenNoiseSpec `json:"noise"`
	T     []float64       `json:"t"`
	Total []float64       `json:"total"`
	Rate  []float64       `json:"rate"`
}

type goldenTransition struct {
	Name     string          `json:"name"`
	Why      string          `json:"why"`
	Graph    string          `json:"graph"`
	Tokens   int             `json:"tokens"`
	Noise    goldenNoiseSpec `json:"noise"`
	Kind     string          `json:"kind"`
	T        float64         `json:"t"`
	Dt       float64         `json:"dt"`
	Eps      float64         `json:"eps"`
	X        []int64         `json:"x"`
	Fixed    [][2]int64      `json:"fixed"`
	LogScore [][]float64     `json:"log_score"`
	Probs    [][]float64     `json:"probs"`
	Negative bool            `json:"has_negative_weight"`
}

type goldenEntropy struct {
	Name     string      `json:"name"`
	Graph    string      `json:"graph"`
	Tokens   int         `json:"tokens"`
	Sigma    float64     `json:"sigma"`
	X0       []int64     `json:"x0"`
	Xt       []int64     `json:"xt"`
	LogScore [][]float64 `json:"log_score"`
	LSE      []float64   `json:"lse"`
	Entropy  []float64   `json:"entropy"`
}

func loadRefmath(t *testing.T) refmath {
	t.Helper()
	data, err := os.ReadFile("testdata/refmath.json")
	if err != nil {
		t.Fatal(err)
	}
	var g refmath
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if g.Format != 1 || len(g.NoiseCases) == 0 || len(g.Transitions) == 0 || len(g.Entropy) == 0 {
		t.Fatalf("testdata/refmath.json: format %d, %d noise, %d transition, %d entropy cases", g.Format, len(g.NoiseCases), len(g.Transitions), len(g.Entropy))
	}
	return g
}

func (s goldenNoiseSpec) noise(t *testing.T) Noise {
	switch s.Type {
	case "loglinear":
		return LogLinear{Eps: s.Eps}
	case "geometric":
		return Geometric{SigmaMin: s.SigmaMin, SigmaMax: s.SigmaMax}
	}
	t.Fatalf("unknown noise %q", s.Type)
	return nil
}

func goldenGraph(t *testing.T, name string, tokens int) Graph {
	switch name {
	case "absorb":
		return Absorbing{Tokens: tokens}
	case "uniform":
		return Uniform{Tokens: tokens}
	}
	t.Fatalf("unknown graph %q", name)
	return nil
}

func float32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
		if float64(out[i]) != x && !math.IsInf(x, 0) {
			panic("golden log score is not a float32")
		}
	}
	return out
}

// closeRel reports |got - want| ≤ rel·|want| + abs.
func closeRel(got, want, rel, abs float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)+abs
}

func TestNoiseGolden(t *testing.T) {
	for _, c := range loadRefmath(t).NoiseCases {
		t.Run(c.Name, func(t *testing.T) {
			n := c.Noise.noise(t)
			for k, tt := range c.T {
				if got := n.Total(tt); !closeRel(got, c.Total[k], 1e-12, 0) {
					t.Errorf("Total(%v) = %v, want %v", tt, got, c.Total[k])
				}
				if got := n.Rate(tt); !closeRel(got, c.Rate[k], 1e-12, 0) {
					t.Errorf("Rate(%v) = %v, want %v", tt, got, c.Rate[k])
				}
			}
		})
	}
}

// TestTransitionProbsGolden compares the dense transition probabilities of
// every position (after projecting x onto the fixed tokens) with the
// reference, to a relative error of 1e-9 (measured: below 2e-14).
func TestTransitionProbsGolden(t *testing.T) {
	negatives := 0
	for _, c := range loadRefmath(t).Transitions {
		t.Run(c.Name, func(t *testing.T) {
			g := goldenGraph(t, c.Graph, c.Tokens)
			noise := c.Noise.noise(t)
			n := g.States()
			var spans []Span
			for _, f := range c.Fixed {
				spans = append(spans, Span{Start: int(f[0]), Tokens: []int64{f[1]}})
			}
			s, err := NewSampler(Config{Graph: g, Noise: noise, Steps: 1, Batch: 1, Length: len(c.X), Fixed: spans})
			if err != nil {
				t.Fatal(err)
			}
			copy(s.x, c.X)
			s.project()
			got := make([]float64, n)
			for i, x := range s.x {
				if s.isFixed[i] {
					clear(got)
					got[x] = 1
				} else {
					var err error
					row := float32s(c.LogScore[i])
					switch c.Kind {
					case "euler":
						err = transitionProbs(got, g, noise, Euler, c.T, c.Dt, x, row)
					case "analytic":
						err = transitionProbs(got, g, noise, Analytic, c.T, c.Dt, x, row)
					case "none":
						err = transitionProbs(got, g, noise, None, c.T, c.Dt, x, row)
					case "denoise":
						err = denoiseProbs(got, g, noise, c.Eps, x, row)
					default:
						t.Fatalf("unknown kind %q", c.Kind)
					}
					if err != nil {
						t.Fatalf("position %d: %v", i, err)
					}
				}
				for j := range n {
					if !closeRel(got[j], c.Probs[i][j], 1e-9, 0) {
						t.Errorf("position %d (x=%d), state %d: got %.17g, want %.17g", i, x, j, got[j], c.Probs[i][j])
					}
				}
			}
		})
		if c.Negative {
			negatives++
		}
	}
	if negatives < 4 {
		t.Errorf("only %d golden cases have negative weights; the clamping is not exercised", negatives)
	}
}

func TestScoreEntropyGolden(t *testing.T) {
	for _, c := range loadRefmath(t).Entropy {
		t.Run(c.Name, func(t *testing.T) {
			g := goldenGraph(t, c.Graph, c.Tokens)
			n, L := g.States(), len(c.X0)
			sc := Scores{Batch: 1, Length: L, N: n, LogScore: make([]float32, 0, L*n), LSE: make([]float32, L)}
			for i := range L {
				row := float32s(c.LogScore[i])
				sc.LogScore = append(sc.LogScore, row...)
				sc.LSE[i] = float32(c.LSE[i])
				got := g.ScoreEntropy(c.X0[i], c.Xt[i], c.Sigma, row, c.LSE[i])
				if !closeRel(got, c.Entropy[i], 1e-9, 1e-12) {
					t.Errorf("position %d: ScoreEntropy = %.17g, want %.17g", i, got, c.Entropy[i])
				}
			}
			// The per-sequence function reads the float32 LSE of Scores, so it
			// agrees to float32 precision.
			per := make([]float64, L)
			total, err := SequenceScoreEntropy(per, g, c.X0, c.Xt, c.Sigma, sc, 0)
			if err != nil {
				t.Fatal(err)
			}
			var want float64
			for i, e := range c.Entropy {
				want += e
				if !closeRel(per[i], e, 1e-6, 1e-6) {
					t.Errorf("SequenceScoreEntropy position %d = %v, want %v", i, per[i], e)
				}
			}
			if !closeRel(total, want, 1e-6, 1e-6) {
				t.Errorf("SequenceScoreEntropy = %v, want %v", total, want)
			}
		})
	}
}
