package diffusion

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// chiSquare returns Pearson's statistic of counts against probabilities p
// (n draws) and its degrees of freedom, pooling categories expected fewer
// than 5 times into one.
func chiSquare(counts []int, p []float64, n int) (stat float64, df int) {
	var poolObs, poolExp float64
	cats := 0
	for j, pj := range p {
		e := pj * float64(n)
		if e < 5 {
			poolObs += float64(counts[j])
			poolExp += e
			continue
		}
		d := float64(counts[j]) - e
		stat += d * d / e
		cats++
	}
	if poolExp >= 5 {
		stat += (poolObs - poolExp) * (poolObs - poolExp) / poolExp
		cats++
	} else if poolObs > 10 && poolObs > 10*poolExp {
		stat += math.Inf(1) // many draws where almost none are expected
	}
	return stat, cats - 1
}

// chiSquareCritical returns the (1 - 1e-6) quantile of χ²(df) by the
// Wilson–Hilferty approximation.
func chiSquareCritical(df int) float64 {
	if df < 1 {
		return math.Inf(1)
	}
	k := float64(df)
	const z = 4.753 // standard normal 1 - 1e-6 quantile
	v := 1 - 2/(9*k) + z*math.Sqrt(2/(9*k))
	return k * v * v * v
}

// lseOf returns log Σ_{j≠x} exp(row[j]) rounded to float32, as a model computes it.
func lseOf(row []float32, x int64) float32 {
	m := math.Inf(-1)
	for j, v := range row {
		if int64(j) != x {
			m = max(m, float64(v))
		}
	}
	var s float64
	for j, v := range row {
		if int64(j) != x {
			s += math.Exp(float64(v) - m)
		}
	}
	return float32(m + math.Log(s))
}

type drawCase struct {
	name  string
	g     Graph
	noise Noise
	kind  string // euler, analytic, denoise
	t, dt float64
	x     int64
	row   []float32
}

func (c drawCase) dense(t *testing.T) []float64 {
	p := make([]float64, c.g.States())
	var err error
	switch c.kind {
	case "euler":
		err = transitionProbs(p, c.g, c.noise, Euler, c.t, c.dt, c.x, c.row)
	case "analytic":
		err = transitionProbs(p, c.g, c.noise, Analytic, c.t, c.dt, c.x, c.row)
	case "denoise":
		err = denoiseProbs(p, c.g, c.noise, c.t, c.x, c.row)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (c drawCase) math() stepMath {
	sp := c.g.spec()
	switch c.kind {
	case "euler":
		return newEulerMath(sp, c.dt*c.noise.Rate(c.t))
	case "analytic":
		return newAnalyticMath(sp, c.noise.Total(c.t)-c.noise.Total(c.t-c.dt), false)
	}
	return newAnalyticMath(sp, c.noise.Total(c.t), true)
}

// drawCases turns every free, non-trivial position of the golden transitions
// into a case, and adds larger random rows (N = 301) so that the uniform
// graph's skipped exponentials matter.
func drawCases(t *testing.T) []drawCase {
	var cases []drawCase
	for _, gc := range loadRefmath(t).Transitions {
		if gc.Kind == "none" || len(gc.Fixed) > 0 {
			continue
		}
		g := goldenGraph(t, gc.Graph, gc.Tokens)
		tt := gc.T
		if gc.Kind == "denoise" {
			tt = gc.Eps
		}
		for i, x := range gc.X {
			if sp := g.spec(); sp.absorb && x != sp.mask {
				continue
			}
			cases = append(cases, drawCase{
				name: fmt.Sprintf("%s/pos%d", gc.Name, i), g: g, noise: gc.Noise.noise(t),
				kind: gc.Kind, t: tt, dt: gc.Dt, x: x, row: float32s(gc.LogScore[i]),
			})
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	big := []struct {
		g     Graph
		noise Noise
	}{
		{Absorbing{Tokens: 300}, LogLinear{Eps: 1e-3}},
		{Uniform{Tokens: 301}, Geometric{SigmaMin: 1e-4, SigmaMax: 20}},
	}
	for _, b := range big {
		for _, kind := range []string{"euler", "analytic", "denoise"} {
			for _, tt := range []float64{1, 0.5, 0.05} {
				n := b.g.States()
				x := int64(r.IntN(n))
				if sp := b.g.spec(); sp.absorb {
					x = sp.mask
				}
				row := make([]float32, n)
				for j := range row {
					row[j] = float32(3*r.NormFloat64() - 5)
				}
				row[x] = 0
				dt := 0.1
				if kind == "denoise" {
					tt = 1e-5
				}
				cases = append(cases, drawCase{
					name: fmt.Sprintf("%T-N%d-%s-t%g", b.g, n, kind, tt), g: b.g, noise: b.noise,
					kind: kind, t: tt, dt: dt, x: x, row: row,
				})
			}
		}
	}
	return cases
}

// TestFastDrawMatchesDense draws 20000 times from each case with the
// sampler's fast path and checks the counts against the dense probabilities
// of transitionProbs/denoiseProbs with a χ² test at level 1e-6. To show the
// test has power, the same counts must fail against a tempered distribution
// (p^0.8, what float32 Gumbel truncation does in spirit) whenever that differs
// enough to be detectable.
func TestFastDrawMatchesDense(t *testing.T) {
	const draws = 20000
	cases := drawCases(t)
	rejectedWrong := 0
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.dense(t)
			if maxOf(p) == 1 {
				return // a certain outcome; checked below by TestFastDrawCertain
			}
			m := c.math()
			lse := float64(lseOf(c.row, c.x))
			r := rand.New(rand.NewPCG(uint64(k), 99))
			cum := make([]float64, len(p))
			counts := make([]int, len(p))
			for range draws {
				j, _, ok := m.draw(r, c.x, c.row, lse, cum)
				if !ok {
					t.Fatal("draw failed")
				}
				counts[j]++
			}
			stat, df := chiSquare(counts, p, draws)
			if crit := chiSquareCritical(df); stat > crit {
				t.Errorf("χ² = %.1f > %.1f (df %d): counts %v, probabilities %v", stat, crit, df, head(counts), head(p))
			}
			wrong := tempered(p, 0.8)
			var noncentral float64
			for j := range p {
				if wrong[j] > 0 {
					noncentral += draws * (p[j] - wrong[j]) * (p[j] - wrong[j]) / wrong[j]
				}
			}
			stat, df = chiSquare(counts, wrong, draws)
			crit := chiSquareCritical(df)
			if noncentral > 4*crit {
				if stat <= crit {
					t.Errorf("a wrong distribution passed: χ² = %.1f ≤ %.1f (noncentrality %.0f)", stat, crit, noncentral)
				}
				rejectedWrong++
			}
		})
	}
	if rejectedWrong < len(cases)/3 {
		t.Errorf("the wrong distribution was testable in only %d of %d cases", rejectedWrong, len(cases))
	}
}

// TestFastDrawCertain checks that outcomes of probability 1 in the dense maths
// (stay, or clamped jumps to the only token) come out of every fast draw.
func TestFastDrawCertain(t *testing.T) {
	n := 0
	for k, c := range drawCases(t) {
		p := c.dense(t)
		want := -1
		for j, v := range p {
			if v == 1 {
				want = j
			}
		}
		if want < 0 {
			continue
		}
		n++
		m := c.math()
		lse := float64(lseOf(c.row, c.x))
		r := rand.New(rand.NewPCG(uint64(k), 7))
		cum := make([]float64, len(p))
		for range 200 {
			if j, _, _ := m.draw(r, c.x, c.row, lse, cum); j != int64(want) {
				t.Fatalf("%s: drew %d, want the certain state %d", c.name, j, want)
			}
		}
	}
	t.Logf("%d cases with a certain outcome", n)
}

func tempered(p []float64, power float64) []float64 {
	out := make([]float64, len(p))
	var s float64
	for j, v := range p {
		out[j] = math.Pow(v, power)
		s += out[j]
	}
	for j := range out {
		out[j] /= s
	}
	return out
}

func maxOf(p []float64) float64 {
	m := math.Inf(-1)
	for _, v := range p {
		m = max(m, v)
	}
	return m
}

func head[T any](v []T) []T { return v[:min(len(v), 8)] }

// TestTransitionProbsEulerByHand: one euler step of a masked position (state 3)
// of an absorbing graph with 3 tokens, at t = 0.5 with Δt = 0.25, jumps to
// token j with probability Δt·σ'(t)·exp(s_j) and stays masked with the rest.
func TestTransitionProbsEulerByHand(t *testing.T) {
	g := Absorbing{Tokens: 3}
	p := make([]float64, g.States())
	logScore := []float32{0, -1, -2, 0}
	if err := transitionProbs(p, g, LogLinear{Eps: 1e-3}, Euler, 0.5, 0.25, g.Mask(), logScore); err != nil {
		t.Fatal(err)
	}
	rate := 0.25 * (1 - 1e-3) / (1 - (1-1e-3)*0.5)
	want := []float64{rate, rate * math.Exp(-1), rate * math.Exp(-2), 0}
	want[3] = 1 - want[0] - want[1] - want[2]
	for j := range p {
		if math.Abs(p[j]-want[j]) > 1e-15 {
			t.Errorf("p[%d] = %.17g, want %.17g", j, p[j], want[j])
		}
	}
	if got := fmt.Sprintf("%.4f", p); got != "[0.4990 0.1836 0.0675 0.2499]" {
		t.Errorf("p = %s", got)
	}
}
