// Package runtime runs exported SEDD score networks with ONNX Runtime. It is
// the only package of the SDK that imports onnxruntime_go (and so the only one
// that needs cgo and the ONNX Runtime shared library).
//
//	s, err := runtime.Open("models/sedd-small", m) // m from manifest.Load
//	sc, err := s.NewScorer()                         // one per goroutine
//	out, err := sc.Score(ctx, x, sigma, batch, length)
//
// The pieces:
//
//   - FindLibrary locates libonnxruntime.so (option, ONNXRUNTIME_SHARED_LIBRARY_PATH,
//     the project's third_party/onnxruntime/, next to the executable, the per-user
//     install, system directories) and says which it used and why.
//   - Acquire and Env.Release reference-count the one process-wide ONNX Runtime
//     environment; sessions and scorers hold their own references.
//   - ScanONNX reads a model's inputs, outputs and node inputs straight from the
//     protobuf file, so that files ONNX Runtime would reject or crash on are
//     refused with a clear error before ONNX Runtime sees them.
//   - Session is one ONNX Runtime session, safe for concurrent use; Scorer owns
//     reusable input and output tensors and implements diffusion.ScoreFunc.
package onnxrt
