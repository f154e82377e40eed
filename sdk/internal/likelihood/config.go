package likelihood

import (
	"fmt"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// DefaultMinTime is the lower end eps_l of the diffusion times the bound
// integrates over, t ∈ (eps_l, 1), as the reference's training loss
// (losses.py, sampling_eps = 1e-3).
const DefaultMinTime = 1e-3

// DefaultBatchSize is the number of (sequence, timestep) rows packed into one
// ScoreFunc call when Config.BatchSize is 0. One row of a GPT-2-sized model at
// length 1024 returns about 206 MB of log scores, so the default stays small.
const DefaultBatchSize = 4

// Sampling is how the K timesteps of one sequence are drawn.
type Sampling int

const (
	// Stratified draws one timestep in each of K equal strata of (eps_l, 1):
	// t_k = eps_l + (1 - eps_l)·(k + u_k)/K with u_k ~ U[0, 1). It is the zero
	// value. It removes the variance that comes from where the timesteps
	// fall; what remains comes from the random corruptions, so on real models
	// both rules give similar errors. Its standard error is slightly
	// conservative.
	Stratified Sampling = iota
	// Antithetic draws K/2 independent u_m ~ U[0, 1) and uses each twice, at
	// t = eps_l + (1 - eps_l)·u_m and at t = eps_l + (1 - eps_l)·(1 - u_m).
	// K must be even. Its squared standard error is unbiased.
	Antithetic
)

// String returns "stratified" or "antithetic".
func (s Sampling) String() string {
	switch s {
	case Stratified:
		return "stratified"
	case Antithetic:
		return "antithetic"
	}
	return fmt.Sprintf("Sampling(%d)", int(s))
}

// Bounds that keep a request from allocating without limit: Evaluate keeps
// one float64 per (sequence, timestep) pair.
const (
	// MaxTimesteps bounds Config.Timesteps.
	MaxTimesteps = 1 << 20
	// MaxDraws bounds len(seqs) × Timesteps (1 GiB of draws).
	MaxDraws = 1 << 27
)

// Config is one likelihood evaluation request. The zero values of Sampling,
// MinTime and BatchSize select Stratified, DefaultMinTime and DefaultBatchSize.
type Config struct {
	// Graph and Noise are the model's graph and noise schedule (from its
	// sedd.json).
	Graph diffusion.Graph
	Noise diffusion.Noise
	// Timesteps is K, the number of Monte-Carlo timesteps (each with its own
	// corrupted sequence) per sequence. The paper uses about 1000; K ≥ 2 is
	// needed for a finite standard error.
	Timesteps int
	// Sampling is how the K timesteps are spread over (MinTime, 1).
	Sampling Sampling
	// MinTime is eps_l, the lower end of the time integral; 0 means
	// DefaultMinTime.
	MinTime float64
	// Seed fixes every random draw. Sequence s, timestep k uses its own
	// streams derived from (Seed, s, k), so results do not depend on
	// BatchSize, on how rows are packed, on GOMAXPROCS, or on the other
	// sequences of the call (only on s's index among them).
	Seed uint64
	// BatchSize is the most rows (sequence, timestep pairs of equal length)
	// passed to one ScoreFunc call; 0 means DefaultBatchSize.
	BatchSize int
	// Progress, if not nil, is called after every ScoreFunc call with the
	// number of rows done and the total (sequences × Timesteps). Returning a
	// non-nil error stops the evaluation; Evaluate then returns an error
	// wrapping it.
	Progress func(done, total int) error
}

// resolved returns cfg with defaults filled in, or an error wrapping
// ErrInvalidConfig.
func (cfg Config) resolved() (Config, error) {
	if cfg.Graph == nil || cfg.Noise == nil {
		return cfg, invalidf("nil graph or noise")
	}
	if err := cfg.Graph.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := cfg.Noise.Validate(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Timesteps <= 0 || cfg.Timesteps > MaxTimesteps {
		return cfg, invalidf("timesteps = %d, must be in [1, %d]", cfg.Timesteps, MaxTimesteps)
	}
	switch cfg.Sampling {
	case Stratified:
	case Antithetic:
		if cfg.Timesteps%2 != 0 {
			return cfg, invalidf("antithetic sampling needs an even number of timesteps, got %d", cfg.Timesteps)
		}
	default:
		return cfg, invalidf("unknown sampling %v", cfg.Sampling)
	}
	if cfg.MinTime == 0 {
		cfg.MinTime = DefaultMinTime
	}
	if !(cfg.MinTime > 0 && cfg.MinTime < 1) {
		return cfg, invalidf("eps = %v, must be in (0, 1)", cfg.MinTime)
	}
	if cfg.BatchSize < 0 {
		return cfg, invalidf("batch size = %d, must be ≥ 0 (0: default)", cfg.BatchSize)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	return cfg, nil
}
