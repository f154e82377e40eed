package diffusion

import (
	"context"
	"math"
	"math/rand/v2"
)

// joint is a closed-form score model of the absorbing graph whose positions
// are dependent: the data law p0 is an arbitrary distribution over all
// tokens^length sequences (small), and the log scores are the exact log
// ratios of the forward process at σ. A sampler that treats positions as
// independent within a step gets this law wrong; an exact one reproduces it.
type joint struct {
	tokens, length int
	p0             []float64 // tokens^length, strictly positive, summing to 1
	marg           []float64 // (tokens+1)^length: P0 of each partial sequence (mask = any token)
	buf, lse       []float32
	calls          int
	sigmas         [][]float32 // the σ of each call, when record is set
	record         bool
}

func newJoint(tokens, length int, seed uint64) *joint {
	r := rand.New(rand.NewPCG(seed, 2))
	f := &joint{tokens: tokens, length: length}
	n := ipow(tokens, length)
	f.p0 = make([]float64, n)
	var sum float64
	for k := range f.p0 {
		v := r.Float64()
		f.p0[k] = 0.02 + v*v*v // a few sequences carry most of the mass
		sum += f.p0[k]
	}
	for k := range f.p0 {
		f.p0[k] /= sum
	}
	f.marg = make([]float64, ipow(tokens+1, length))
	for k := range f.marg {
		f.marg[k] = f.partial(k)
	}
	return f
}

func ipow(a, b int) int {
	n := 1
	for range b {
		n *= a
	}
	return n
}

// partial returns P0 of the partial sequence coded as k in base tokens+1
// (digit tokens = mask, matching anything).
func (f *joint) partial(k int) float64 {
	var sum float64
	for s, p := range f.p0 {
		kk, ss, ok := k, s, true
		for range f.length {
			d, t := kk%(f.tokens+1), ss%f.tokens
			if d != f.tokens && d != t {
				ok = false
				break
			}
			kk /= f.tokens + 1
			ss /= f.tokens
		}
		if ok {
			sum += p
		}
	}
	return sum
}

// code returns the base-(tokens+1) code of x, position 0 the lowest digit.
func (f *joint) code(x []int64) int {
	k := 0
	for i := len(x) - 1; i >= 0; i-- {
		k = k*(f.tokens+1) + int(x[i])
	}
	return k
}

// seqIndex returns the index into p0 of a sequence without masks.
func (f *joint) seqIndex(x []int64) int {
	k := 0
	for i := len(x) - 1; i >= 0; i-- {
		k = k*f.tokens + int(x[i])
	}
	return k
}

func (f *joint) Score(_ context.Context, x []int64, sigma []float32, batch, length int) (Scores, error) {
	f.calls++
	if f.record {
		f.sigmas = append(f.sigmas, append([]float32(nil), sigma...))
	}
	n := f.tokens + 1
	if cap(f.buf) < batch*length*n {
		f.buf = make([]float32, batch*length*n)
		f.lse = make([]float32, batch*length)
	}
	sc := Scores{Batch: batch, Length: length, N: n, LogScore: f.buf[:batch*length*n], LSE: f.lse[:batch*length]}
	mask := int64(f.tokens)
	pow := 1
	for i := range length {
		for b := range batch {
			xb := x[b*length : (b+1)*length]
			em1 := math.Expm1(float64(sigma[b]))
			k := f.code(xb)
			base := f.marg[k]
			row := sc.Row(b, i)
			cur := int(xb[i])
			var lse float64
			for j := range n {
				if j == cur {
					row[j] = 0
					continue
				}
				p := f.marg[k+(j-cur)*pow]
				// p_σ(x) ∝ P0(x_U)·e^{-σ|U|}(1-e^{-σ})^{|M|}: unmasking one
				// position multiplies by 1/(e^σ-1), masking one by e^σ-1.
				v := math.Log(p / base)
				switch {
				case int64(cur) == mask:
					v -= math.Log(em1)
				case int64(j) == mask:
					v += math.Log(em1)
				}
				row[j] = float32(v)
				lse += math.Exp(v)
			}
			sc.LSE[b*length+i] = float32(math.Log(lse))
		}
		pow *= n
	}
	return sc, nil
}
