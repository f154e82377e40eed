// Package diffusion is the pure-Go maths of Score Entropy Discrete Diffusion
// (SEDD; Lou, Meng & Ermon, ICML 2024): the absorbing and uniform graphs, the
// log-linear and geometric noise schedules, the euler, analytic and none
// predictors with the final denoiser, the exact first-hitting sampler of the
// absorbing graph, the sampling loop with fixed-token
// conditioning, and the score entropy behind the likelihood bound. It
// reproduces the reference implementation (graph_lib.py, noise_lib.py,
// sampling.py, losses.py) and is checked against float64 PyTorch goldens
// written by export/make_math_golden.py.
//
// The score network is behind the small ScoreFunc interface, so this package
// has no cgo and no ONNX dependency; the SDK supplies an ONNX Runtime
// implementation, tests a closed-form one. The happy path:
//
//	cfg := diffusion.Config{Graph: diffusion.Absorbing{Tokens: 50257}, Noise: diffusion.LogLinear{Eps: 1e-3},
//		Predictor: diffusion.Analytic, Steps: 1024, Denoise: true, Batch: 1, Length: 1024, Seed: 1}
//	s, err := diffusion.NewSampler(cfg)
//	tokens, err := s.Run(ctx, model)
//
// Categorical draws are made in float64 by inverse CDF (never float32 Gumbel
// noise, which truncates the tail), from one ChaCha8 stream per batch row, so
// samples are reproducible bit for bit on every platform and GOMAXPROCS. On the
// absorbing graph a step costs O(Length) plus O(N) for each position that
// actually unmasks, using the log-sum-exp output of the score network.
package diffusion
