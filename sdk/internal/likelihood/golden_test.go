package likelihood

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// The goldens are written by export/make_likelihood_golden.py from
// seddpy.likelihood (float64 torch, the reference's formulas).

type goldenNoise struct {
	Type     string  `json:"type"`
	Eps      float64 `json:"eps"`
	SigmaMin float64 `json:"sigma_min"`
	SigmaMax float64 `json:"sigma_max"`
}

func (n goldenNoise) noise(t *testing.T) diffusion.Noise {
	t.Helper()
	switch n.Type {
	case "loglinear":
		return diffusion.LogLinear{Eps: n.Eps}
	case "geometric":
		return diffusion.Geometric{SigmaMin: n.SigmaMin, SigmaMax: n.SigmaMax}
	}
	t.Fatalf("unknown noise %q", n.Type)
	return nil
}

func goldenGraph(t *testing.T, kind string, tokens int) diffusion.Graph {
	t.Helper()
	switch kind {
	case "absorb":
		return diffusion.Absorbing{Tokens: tokens}
	case "uniform":
		return diffusion.Uniform{Tokens: tokens}
	}
	t.Fatalf("unknown graph %q", kind)
	return nil
}

type entropyCase struct {
	Name          string      `json:"name"`
	Why           string      `json:"why"`
	Graph         string      `json:"graph"`
	Tokens        int         `json:"tokens"`
	Noise         goldenNoise `json:"noise"`
	T             float64     `json:"t"`
	Sigma         float64     `json:"sigma"`
	Rate          float64     `json:"rate"`
	X0            []int64     `json:"x0"`
	Xt            []int64     `json:"xt"`
	LogScore      [][]float64 `json:"log_score"`
	LSE           []float64   `json:"lse"`
	Entropy       []float64   `json:"entropy"`
	EntropySummed []float64   `json:"entropy_summed"`
	Loss          float64     `json:"loss"`
}

// closeRel reports |got - want| ≤ rel·|want| + abs.
func closeRel(got, want, rel, abs float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)+abs
}

func TestScoreEntropyGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/score_entropy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Format int           `json:"format"`
		Cases  []entropyCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Format != 1 || len(doc.Cases) < 10 {
		t.Fatalf("format %d with %d cases", doc.Format, len(doc.Cases))
	}
	graphs := map[string]bool{}
	for _, c := range doc.Cases {
		t.Run(c.Name, func(t *testing.T) {
			graphs[c.Graph] = true
			g := goldenGraph(t, c.Graph, c.Tokens)
			noise := c.Noise.noise(t)
			if !closeRel(noise.Total(c.T), c.Sigma, 1e-14, 0) || !closeRel(noise.Rate(c.T), c.Rate, 1e-14, 0) {
				t.Fatalf("σ(%v) = %v, σ' = %v; golden %v, %v", c.T, noise.Total(c.T), noise.Rate(c.T), c.Sigma, c.Rate)
			}
			L, n := len(c.X0), g.States()
			sc := diffusion.Scores{Batch: 2, Length: L, N: n, LogScore: make([]float32, 2*L*n), LSE: make([]float32, 2*L)}
			// Row 1 holds the case; row 0 is garbage that must not be read.
			for j := range L * n {
				sc.LogScore[j] = float32(math.NaN())
			}
			for i := range L {
				sc.LSE[i] = float32(math.NaN())
				sc.LSE[L+i] = float32(c.LSE[i])
				for j, v := range c.LogScore[i] {
					if float64(float32(v)) != v {
						t.Fatalf("log score %d,%d = %v is not a float32", i, j, v)
					}
					sc.LogScore[(L+i)*n+j] = float32(v)
				}
			}
			per := make([]float64, L)
			loss, err := drawLossAt(per, g, noise, c.T, c.X0, c.Xt, sc, 1)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range c.Entropy {
				if !closeRel(per[i], want, 1e-9, 1e-12) {
					t.Errorf("position %d: ℓ = %.17g, want %.17g (rel %.3g)", i, per[i], want, math.Abs(per[i]-want)/math.Abs(want))
				}
				// The float32 LSE is all that separates it from the summed form.
				if !closeRel(per[i], c.EntropySummed[i], 1e-3, 1e-5) {
					t.Errorf("position %d: ℓ = %v, summed reference %v", i, per[i], c.EntropySummed[i])
				}
			}
			if !closeRel(loss, c.Loss, 1e-9, 1e-12) {
				t.Errorf("draw loss %.17g, want %.17g", loss, c.Loss)
			}
		})
	}
	if !graphs["absorb"] || !graphs["uniform"] {
		t.Errorf("graphs covered: %v", graphs)
	}
}
