package diffusion

import (
	"context"
	"fmt"
	"math"
)

// runFirstHitting samples the absorbing reverse process exactly, one unmasking
// per network evaluation (Zheng et al., arXiv 2409.02908), from the all-mask
// start that start() has set up.
//
// Under the forward process a position is masked at time t with probability
// p(t) = 1 - e^{-σ(t)}, independently of the others, so given that m positions
// are still masked at time t their masking times are independent with
// distribution function p(s)/p(t) on [0, t], and the next of them to unmask
// (going backwards) does so where p(s) = p(t)·u^{1/m}, u uniform; every masked
// position is equally likely to be that one. Its token follows the model's
// conditional distribution of the clean token, ∝ exp(s_j) over the ordinary
// tokens (for the absorbing graph the normalized scores of a masked position
// are that distribution, whatever σ). So the noise schedule enters only through
// p(1) and the σ the network is told, σ = -log(1 - p).
//
// The network is evaluated at the time of the unmasking, but never below
// σ(EndTime), the lowest noise the other samplers show it: the time-conditioned
// networks were not trained below it (an ideal network's output does not depend
// on it). Each row draws, in this order and from its own stream: the uniform of
// its next time (before the network call), the index of the position among its
// masked ones, and the uniform of the token. The position is drawn before the
// call too, so that a RowScoreFunc is asked for that one position of each row.
func (s *Sampler) runFirstHitting(ctx context.Context, score ScoreFunc) error {
	B, L := s.cfg.Batch, s.w
	free := 0
	for i := range L {
		if !s.isFixed[i] {
			s.pending[free] = int32(i)
			free++
		}
	}
	for b := 1; b < B; b++ {
		copy(s.pending[b*L:b*L+free], s.pending[:free])
	}
	p1 := -math.Expm1(-s.cfg.Noise.Total(1))
	for b := range s.p {
		s.p[b] = p1
	}
	floor := s.cfg.Noise.Total(s.cfg.EndTime)
	for k := range free {
		idx := s.base + k + 1
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("diffusion: before step %d: %w", idx, err)
		}
		masked := free - k
		s.want = s.want[:0]
		for b, r := range s.rngs {
			u := 1 - r.Float64() // in (0, 1]
			s.p[b] *= math.Pow(u, 1/float64(masked))
			s.sigma[b] = float32(max(-math.Log1p(-s.p[b]), floor))
			s.picks[b] = r.IntN(masked)
			s.want = append(s.want, int32(b*L)+s.pending[b*L+s.picks[b]])
		}
		sc, err := s.score(ctx, score, B, L, true)
		if err != nil {
			return fmt.Errorf("diffusion: score at step %d: %w", idx, err)
		}
		if err := sc.checkRows(B, L, s.g.n, s.want); err != nil {
			return &ScoreError{Step: idx, Detail: err.Error(), Err: ErrScoreShape}
		}
		for b, r := range s.rngs {
			pend := s.pending[b*L : b*L+masked]
			pick := s.picks[b]
			i := int(pend[pick])
			pend[pick] = pend[masked-1]
			k := sc.Slot(b, i)
			if k < 0 {
				return &ScoreError{Step: idx, Row: b, Position: i, Detail: "the output of the position to unmask is missing", Err: ErrScoreShape}
			}
			lse := float64(sc.LSE[k])
			if math.IsNaN(lse) || math.IsInf(lse, 0) {
				return &ScoreError{Step: idx, Row: b, Position: i, Value: lse, Detail: "log-sum-exp", Err: ErrNonFinite}
			}
			tok, fault, ok := drawUnmask(s.unmask, r, sc.LogScore[k*s.g.n:k*s.g.n+int(s.g.mask)], lse, s.cum)
			if !ok {
				return unmaskFault(idx, b, i, fault)
			}
			s.x[b*L+i] = tok
		}
		if s.cfg.Progress != nil {
			t := 0.0
			if masked > 1 {
				t = timeOfSigma(s.cfg.Noise, -math.Log1p(-slicesMax(s.p)))
			}
			if err := s.report(k+1, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// unmaskFault is the ScoreError of a row that could not be drawn from.
func unmaskFault(idx, b, i int, fault rowFault) error {
	detail := "sum of transition weights"
	if fault.index >= 0 {
		detail = fmt.Sprintf("log score of state %d", fault.index)
	}
	return &ScoreError{Step: idx, Row: b, Position: i, Value: fault.value, Detail: detail, Err: ErrNonFinite}
}

func slicesMax(v []float64) float64 {
	m := v[0]
	for _, x := range v[1:] {
		m = max(m, x)
	}
	return m
}

// timeOfSigma returns the time t in [0, 1] with noise.Total(t) = sigma, by
// bisection (the schedules are increasing); it is only reported, never used
// in a draw.
func timeOfSigma(noise Noise, sigma float64) float64 {
	lo, hi := 0.0, 1.0
	for range 64 {
		mid := (lo + hi) / 2
		if noise.Total(mid) < sigma {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
