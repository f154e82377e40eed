// Package sdk runs SEDD (Score Entropy Discrete Diffusion, Lou, Meng & Ermon,
// ICML 2024) language models exported by export/ (see ONNX-CONTRACT.md): it
// opens a model directory, samples text with the reference's predictors,
// constrains samples with fixed spans and infill templates, verifies an export
// against its golden PyTorch outputs, and estimates the likelihood bound.
//
// The happy path:
//
//	m, err := sdk.Open("models/brown-sedd")
//	defer m.Close()
//	res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 128, Prefix: "The jury"})
//
// Generative perplexity: OpenEvaluator opens an autoregressive evaluator (a
// "causal-lm" directory), Evaluator.Score scores samples with it, and
// SummarizePerplexity and UnigramEntropy summarize a set of samples.
//
// The maths lives in sdk/diffusion (pure Go, testable with a fake score
// function); ONNX Runtime lives in sdk/runtime, the only package that uses
// cgo. A Model is safe for concurrent use.
//
// Errors callers can match with errors.Is: ErrBadRequest, ErrBadTemplate
// (*TemplateError), ErrTooLong, ErrClosed, ErrChecksum, ErrTokenizerMismatch,
// ErrVerify (this package); runtime.ErrLibraryNotFound, runtime.ErrLibraryLoad
// (*runtime.LibraryError), runtime.ErrLibraryConflict,
// runtime.ErrCUDAUnavailable (*runtime.CUDAError), runtime.ErrNotONNX,
// runtime.ErrEmptyNodeInput, runtime.ErrGraphMismatch (*runtime.GraphError),
// runtime.ErrModelLoad, runtime.ErrInput; manifest.ErrSyntax,
// manifest.ErrFormat, manifest.ErrKind, manifest.ErrGraph, manifest.ErrNoise,
// manifest.ErrMissing, manifest.ErrInvalid, manifest.ErrMismatch
// (*manifest.FieldError); tokenizer.ErrFormat; diffusion.ErrNonFinite (a NaN
// or Inf score, with the step in *diffusion.ScoreError, or the timestep in
// *likelihood.ScoreError), diffusion.ErrInvalidConfig,
// likelihood.ErrInvalidConfig; fs.ErrNotExist for missing files; and
// context.Canceled or context.DeadlineExceeded when ctx ends a run.
// docs/ERRORS.md says when each occurs and what to do.
package sdk
