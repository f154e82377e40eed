// Package likelihood estimates the SEDD likelihood bound of token sequences:
// the negative ELBO of Lou, Meng & Ermon (ICML 2024), whose exponential per
// token is the perplexity bound of the paper's Table 1. It is pure Go: the
// score network is a diffusion.ScoreFunc (ONNX Runtime through sdk.Model.Evaluate,
// a closed-form fake in tests). The happy path:
//
//	windows, _ := likelihood.Windows(tokens, 1024, likelihood.KeepShort)
//	res, err := likelihood.Evaluate(ctx, scorer, windows, likelihood.Config{Graph: g, Noise: noise, Timesteps: 1000})
//	fmt.Printf("PPL ≤ %.2f [%.2f, %.2f]\n", res.Perplexity, res.PerplexityLow, res.PerplexityHigh)
//
// # The estimator
//
// For a clean sequence x0 of length L, with ℓ_i the denoising score entropy of
// position i (graph_lib.py's score_entropy, constants included, so ℓ_i ≥ 0
// and ℓ_i = 0 at the true score; see diffusion.Graph.ScoreEntropy), the bound
// is
//
//	B(x0) = ∫_{eps_l}^{1} σ'(t) · E_{x_t ~ p(·|x0, σ(t))} [ Σ_i ℓ_i(x_t, x0, s(x_t, σ(t))) ] dt.
//
// On the absorbing graph only masked positions contribute, and a masked
// position needs only Σ_{j<M} exp(s_ij), which is exp(log_score_lse) because
// the entry at M is 0 and excluded, and the one log score at x0_i: the Go work
// per network row is O(L). On the uniform graph every position contributes
// and reads its whole row (O(L·N)).
//
// Each sequence gets K timesteps (Config.Timesteps) and, for each, its own
// forward corruption x_t; the value of one draw is Y_k = σ'(t_k)·Σ_i ℓ_i, and
// the estimate is B̂ = (1 − eps_l)·mean_k Y_k, unbiased for B. Timesteps are
// Stratified, t_k = eps_l + (1 − eps_l)(k + u_k)/K, or Antithetic, pairs
// (u, 1 − u). The corpus bound is Σ_s B̂_s over Σ_s L_s tokens, in nats per
// token, and the perplexity bound is exp(nats per token).
//
// Random numbers come from ChaCha8 streams keyed by (Config.Seed, sequence
// index, timestep index), so results are reproducible bit for bit and do not
// depend on BatchSize, row packing or GOMAXPROCS.
//
// # What the bound leaves out: the truncation at eps_l and the prior term
//
// The exact identity behind the bound, for the true scores, is
//
//	−log p(x0) = ∫_0^{σ(eps_l)} f(σ) dσ + ∫_{σ(eps_l)}^{σ(1)} f(σ) dσ + KL(p_{σ(1)}(·|x0) ‖ p_{σ(1)}),
//
// with f(σ) = E[Σ_i ℓ_i] at total noise σ. The estimator covers the middle
// term only, as the reference's loss and the paper's reported numbers do. The
// first term, the truncation, is the part of the integral below σ(eps_l)
// (t < eps_l, plus σ < σ_min for the geometric schedule); the last, the prior
// term, compares the forward process at t = 1 with the model's starting
// distribution. For the absorbing graph with exact scores of a distribution
// with independent positions, f(σ) = e^{−σ}·NLL, so the three terms are
// (1 − e^{−σ(eps_l)})·NLL, (e^{−σ(eps_l)} − e^{−σ(1)})·NLL and e^{−σ(1)}·NLL.
// With the log-linear schedule (e^{−σ(t)} = 1 − (1 − ε)t, ε = 1e-3) and
// eps_l = 1e-3 the estimate's expectation is (1 − ε)(1 − eps_l)·NLL ≈
// 0.998·NLL: the truncation and the prior term each leave out about 0.1 % of
// the NLL. For any distribution on the absorbing graph the integrand tends,
// as t → 0, to Σ_i −log p(x0_i | all other tokens), so the truncation is
// about eps_l times that sum: at most of the same 0.1 % order. The prior term
// of the absorbing graph against the all-mask start is infinite in theory (a
// fraction ε of tokens is never masked at t = 1) and ignored, as in the
// paper. The tests check all three terms on exact scores for both graphs.
//
// # Standard errors
//
// Every StdErr is a Monte-Carlo standard error: how far B̂ may be from the
// exact bound B of this model on this text, because of the random timesteps
// and corruptions. It says nothing about how the number would change on other
// text from the same source; for that, compare per-sequence bounds across
// windows. Sequences are independent, so the corpus variance is the sum of
// the sequences' variances.
//
// For Antithetic timesteps the K/2 pair means are i.i.d., and their sample
// standard deviation over √(K/2) is the usual, unbiased-variance estimate.
// For Stratified timesteps (one draw per stratum) strata are collapsed into
// adjacent pairs (the last group has three when K is odd); this estimate is
// conservative, too large on average by the squared differences between
// neighbouring strata's means, which is small for the smooth integrand. K = 1
// (or K = 2 for Antithetic) leaves nothing to estimate a spread from: the
// StdErr is then +Inf.
//
// The draws are skewed: at small t few positions are masked and σ'(t)/(e^σ−1)
// ≈ 1/t is large, so rare draws are big. With exact scores (L = 256, K = 400,
// 200 seeds) the reported standard error matched the true spread of B̂, and
// |B̂ − B| exceeded two standard errors in 7.5 % of runs (5 % for a normal
// law), mostly by falling below B. Read the 95 % interval
// [PerplexityLow, PerplexityHigh] = exp(nats/token ∓ 1.96·StdErr) with that
// in mind, and prefer long sequences and K in the hundreds or more: the
// paper used about 1000.
//
// # Text windows
//
// Windows cuts a token stream into consecutive non-overlapping windows of the
// model length (no sliding window, the paper's protocol), and JoinDocuments
// joins documents with an end-of-text token after each one, as the
// reference's data pipeline does. The last window, when shorter, is by
// default kept and evaluated at its own length (KeepShort): every token is
// scored once and short texts still get a bound; DropShort drops it, as the
// reference does. See LastWindow.
package likelihood
