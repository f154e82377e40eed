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
// The maths lives in sdk/diffusion (pure Go, testable with a fake score
// function); ONNX Runtime lives in sdk/runtime, the only package that uses
// cgo. A Model is safe for concurrent use.
//
// Errors callers can match with errors.Is: ErrBadRequest, ErrBadTemplate,
// ErrTooLong, ErrClosed, ErrChecksum, ErrTokenizerMismatch, ErrVerify (this
// package); runtime.ErrLibraryNotFound, runtime.ErrLibraryLoad,
// runtime.ErrCUDAUnavailable, runtime.ErrNotONNX, runtime.ErrEmptyNodeInput,
// runtime.ErrGraphMismatch, runtime.ErrInput; manifest.ErrFormat,
// manifest.ErrGraph, manifest.ErrNoise, manifest.ErrMissing,
// manifest.ErrInvalid, manifest.ErrMismatch, manifest.ErrSyntax;
// diffusion.ErrNonFinite (a NaN or Inf score, with the step in
// *diffusion.ScoreError), diffusion.ErrInvalidConfig; and context.Canceled or
// context.DeadlineExceeded when ctx ends a run.
package sdk
