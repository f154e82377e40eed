package diffusion

import "math"

// Noise is a noise schedule: the total noise σ(t) and its rate σ'(t) for
// diffusion time t in [0, 1]. Implementations must be safe for concurrent use.
type Noise interface {
	// Total returns σ(t).
	Total(t float64) float64
	// Rate returns σ'(t), the derivative of Total.
	Rate(t float64) float64
	// Validate reports whether the schedule's parameters are usable.
	Validate() error
}

// LogLinear is the log-linear schedule of the absorbing SEDD models:
// σ(t) = -log(1 - (1-Eps)·t), so that 1 - e^{-σ(t)} = (1-Eps)·t. Every
// published absorbing model uses Eps = 1e-3.
type LogLinear struct {
	Eps float64
}

// Total returns σ(t) = -log1p(-(1-Eps)·t).
func (n LogLinear) Total(t float64) float64 { return -math.Log1p(-(1 - n.Eps) * t) }

// Rate returns σ'(t) = (1-Eps) / (1 - (1-Eps)·t).
func (n LogLinear) Rate(t float64) float64 { return (1 - n.Eps) / (1 - (1-n.Eps)*t) }

// Validate reports an error unless 0 < Eps < 1.
func (n LogLinear) Validate() error {
	if !(n.Eps > 0 && n.Eps < 1) {
		return invalidf("loglinear noise eps = %v, must be in (0, 1)", n.Eps)
	}
	return nil
}

// Geometric is the geometric schedule σ(t) = SigmaMin^(1-t) · SigmaMax^t, used
// by the uniform SEDD models (SigmaMin = 1e-4, SigmaMax = 20).
type Geometric struct {
	SigmaMin, SigmaMax float64
}

// Total returns σ(t) = SigmaMin^(1-t) · SigmaMax^t.
func (n Geometric) Total(t float64) float64 {
	return math.Pow(n.SigmaMin, 1-t) * math.Pow(n.SigmaMax, t)
}

// Rate returns σ'(t) = σ(t) · (log SigmaMax - log SigmaMin).
func (n Geometric) Rate(t float64) float64 {
	return n.Total(t) * (math.Log(n.SigmaMax) - math.Log(n.SigmaMin))
}

// Validate reports an error unless 0 < SigmaMin < SigmaMax < +Inf.
func (n Geometric) Validate() error {
	if !(n.SigmaMin > 0 && n.SigmaMin < n.SigmaMax && !math.IsInf(n.SigmaMax, 1)) {
		return invalidf("geometric noise sigma_min = %v, sigma_max = %v, need 0 < sigma_min < sigma_max < Inf", n.SigmaMin, n.SigmaMax)
	}
	return nil
}
