// Package sdk runs SEDD (Score Entropy Discrete Diffusion, Lou, Meng & Ermon,
// ICML 2024) language models exported by export/export.py: it opens a model
// directory, samples text with the reference's samplers, conditions samples
// on a prefix, a suffix, fixed spans or an infill template, bounds the
// likelihood of text, and verifies an export against its golden PyTorch
// outputs. It is the only package a program needs to import.
//
// The happy path:
//
//	m, err := sdk.Open("models/brown-sedd-small")
//	if err != nil { ... }
//	defer m.Close()
//	res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 128, Prefix: "The jury"})
//	fmt.Println(res.Samples[0].Text)
//
// The verbs of a Model: Sample (and Stream, the same step by step), Evaluate
// (the likelihood bound of documents), Verify (the export against its golden
// outputs), Info, Tokenize, Decode and Close. Requests and results are plain
// structs whose zero values mean "the default". A Model is safe for
// concurrent use; Close never waits and stops calls in flight. With
// WithBatching, concurrent calls share the network's forward passes (a
// server's cross-request batching); BatchStats counts the passes.
//
// Errors match one of ErrBadRequest, ErrBadModel, ErrRuntimeUnavailable,
// ErrCUDAUnavailable and ErrClosed with errors.Is, or the context's error;
// each message says what exactly is wrong and what to do (docs/ERRORS.md).
//
// The SDK runs the network with ONNX Runtime's shared library, which it
// loads at the first Open (see WithLibraryPath for where it looks). The
// maths lives in pure Go: sdk/diffusion (sampling), which a researcher can
// drive with a score function of their own, and the bound behind
// Model.Evaluate; sdk/tokenizer reads a model's tokenizer.json. Generative
// perplexity, a benchmark metric, is in sdk/perplexity.
package sdk
