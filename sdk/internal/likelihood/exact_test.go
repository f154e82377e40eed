package likelihood

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// independent is a data distribution whose positions are independent, with
// p_i(j) = P[i][j] over the data tokens, and its exact score function: the log
// ratios of the forward marginals p_σ(x with x_i := j)/p_σ(x). They are
// closed-form because the marginal factorises over positions:
//
//	absorb:  p_σ,i(j) = e^{-σ}·p_i(j) for j < M, p_σ,i(M) = 1 - e^{-σ};
//	uniform: p_σ,i(j) = e^{-σ}·p_i(j) + (1 - e^{-σ})/N.
//
// For a masked absorbing position this gives log p_i(j) - log(e^σ - 1).
type independent struct {
	g   diffusion.Graph
	P   [][]float64 // Length × data tokens
	ls  []float32
	lse []float32
	// shift is added to every log score that is not pinned to 0: a wrong
	// score, for negative controls.
	shift float64
}

func newIndependent(g diffusion.Graph, length, tokens int, seed uint64) *independent {
	r := rand.New(rand.NewPCG(seed, 7))
	P := make([][]float64, length)
	for i := range P {
		P[i] = make([]float64, tokens)
		var sum float64
		for j := range P[i] {
			P[i][j] = math.Exp(1.5 * r.NormFloat64())
			sum += P[i][j]
		}
		for j := range P[i] {
			P[i][j] /= sum
		}
	}
	return &independent{g: g, P: P}
}

// sample draws a sequence from the distribution.
func (m *independent) sample(r *rand.Rand) []int64 {
	x := make([]int64, len(m.P))
	for i, p := range m.P {
		u := r.Float64()
		var c float64
		x[i] = int64(len(p) - 1)
		for j, v := range p {
			c += v
			if u < c {
				x[i] = int64(j)
				break
			}
		}
	}
	return x
}

// nll returns the exact -log p(x).
func (m *independent) nll(x []int64) float64 {
	var s float64
	for i, tok := range x {
		s -= math.Log(m.P[i][tok])
	}
	return s
}

// marginal returns p_σ,i(j) for every state j.
func (m *independent) marginal(i int, sigma float64) []float64 {
	n := m.g.States()
	q := make([]float64, n)
	keep := math.Exp(-sigma)
	move := -math.Expm1(-sigma)
	if _, ok := m.g.(diffusion.Absorbing); ok {
		for j, p := range m.P[i] {
			q[j] = keep * p
		}
		q[n-1] = move
		return q
	}
	for j, p := range m.P[i] {
		q[j] = keep*p + move/float64(n)
	}
	return q
}

// row writes the exact log scores of position i in state x at sigma to dst
// and returns their log-sum-exp over j ≠ x.
func (m *independent) row(dst []float32, i int, x int64, sigma float64) float64 {
	q := m.marginal(i, sigma)
	var mask int64 = -1
	if a, ok := m.g.(diffusion.Absorbing); ok {
		mask = a.Mask()
	}
	var s []float64
	for j := range q {
		var v float64
		switch {
		case int64(j) == x:
			v = 0
		case x == mask:
			// log p_i(j) - log(e^σ - 1), written without cancellation.
			v = math.Log(m.P[i][j]) - math.Log(math.Expm1(sigma)) + m.shift
		default:
			v = math.Log(q[j]) - math.Log(q[x]) + m.shift
		}
		if int64(j) == x {
			dst[j] = 0
			continue
		}
		if x == mask && int64(j) == mask {
			continue
		}
		dst[j] = float32(v)
		s = append(s, float64(dst[j]))
	}
	return logSumExp(s)
}

func logSumExp(s []float64) float64 {
	hi := math.Inf(-1)
	for _, v := range s {
		hi = max(hi, v)
	}
	var t float64
	for _, v := range s {
		t += math.Exp(v - hi)
	}
	return hi + math.Log(t)
}

// Score implements diffusion.ScoreFunc.
func (m *independent) Score(_ context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	n := m.g.States()
	m.ls = append(m.ls[:0], make([]float32, batch*length*n)...)
	m.lse = append(m.lse[:0], make([]float32, batch*length)...)
	for b := range batch {
		for i := range length {
			off := (b*length + i) * n
			m.lse[b*length+i] = float32(m.row(m.ls[off:off+n], i, x[b*length+i], float64(sigma[b])))
		}
	}
	return diffusion.Scores{Batch: batch, Length: length, N: n, LogScore: m.ls, LSE: m.lse}, nil
}

// expectedEntropy returns f(σ) = E_{x_σ}[Σ_i ℓ_i] for the clean sequence x0
// with the exact scores, by enumerating each position's corrupted state.
func (m *independent) expectedEntropy(x0 []int64, sigma float64) float64 {
	n := m.g.States()
	buf := make([]float32, n)
	var f float64
	for i, tok := range x0 {
		for xt := range n {
			pr := m.transition(tok, int64(xt), sigma)
			if pr == 0 {
				continue
			}
			lse := m.row(buf, i, int64(xt), sigma)
			f += pr * m.g.ScoreEntropy(tok, int64(xt), sigma, buf, lse)
		}
	}
	return f
}

// transition returns P(x_σ = xt | x_0 = x0) for one position.
func (m *independent) transition(x0, xt int64, sigma float64) float64 {
	n := m.g.States()
	keep := math.Exp(-sigma)
	if a, ok := m.g.(diffusion.Absorbing); ok {
		switch xt {
		case x0:
			return keep
		case a.Mask():
			return 1 - keep
		}
		return 0
	}
	p := (1 - keep) / float64(n)
	if xt == x0 {
		p += keep
	}
	return p
}

// priorKL returns Σ_i KL(p_σ(·|x0_i) ‖ p_σ,i) at σ: the prior term of the
// exact ELBO when the reverse process starts from the true marginal at σ.
func (m *independent) priorKL(x0 []int64, sigma float64) float64 {
	var kl float64
	for i, tok := range x0 {
		q := m.marginal(i, sigma)
		for j := range q {
			if a := m.transition(tok, int64(j), sigma); a > 0 {
				kl += a * math.Log(a/q[j])
			}
		}
	}
	return kl
}

// gaussLegendre integrates f over [a, b] with the 5-point Gauss–Legendre rule
// on panels equal panels (no endpoint evaluations).
func gaussLegendre(f func(float64) float64, a, b float64, panels int) float64 {
	nodes := [5]float64{0, -0.5384693101056831, 0.5384693101056831, -0.9061798459386640, 0.9061798459386640}
	weights := [5]float64{0.5688888888888889, 0.4786286704993665, 0.4786286704993665, 0.2369268850561891, 0.2369268850561891}
	h := (b - a) / float64(panels)
	var s float64
	for p := range panels {
		mid := a + (float64(p)+0.5)*h
		for k, x := range nodes {
			s += weights[k] * f(mid+0.5*h*x)
		}
	}
	return s * h / 2
}
