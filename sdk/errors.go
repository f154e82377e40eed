package sdk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/golden"
	"github.com/sedd-go/sedd/sdk/internal/likelihood"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/tokenizer"
)

// The errors a caller can act on. Every error the SDK returns either matches
// one of these with errors.Is, or is ctx's error (context.Canceled,
// context.DeadlineExceeded, wrapped) when the caller's context ended the
// call. The message says what exactly went wrong and what to do about it;
// docs/ERRORS.md lists every case.
var (
	// ErrBadRequest marks a request the SDK refuses before running it: an
	// invalid field, a prompt or template that does not fit in the sequence
	// length, a malformed infill template, text that is not valid UTF-8.
	// Fix the request; retrying it unchanged fails again.
	ErrBadRequest = errors.New("bad request")
	// ErrBadModel marks a model directory that cannot be used, or a network
	// that misbehaves: a missing or special file, a file over its size
	// limit, a manifest, tokenizer or ONNX file that is malformed, truncated
	// or does not match sedd.json (size, sha256, vocabulary, graph), golden
	// outputs that the network no longer reproduces (Verify), or a network
	// that returns NaN or infinite scores. Export the model again.
	ErrBadModel = errors.New("bad model")
	// ErrRuntimeUnavailable marks an ONNX Runtime shared library that cannot
	// be found or loaded, or a second, different library asked for in a
	// process that already runs one. Install ONNX Runtime, or point
	// WithLibraryPath or ONNXRUNTIME_SHARED_LIBRARY_PATH at it.
	ErrRuntimeUnavailable = errors.New("ONNX Runtime unavailable")
	// ErrCUDAUnavailable marks a CUDA device that was asked for but cannot be
	// used (usually a CPU-only build of ONNX Runtime). Run on the CPU, or
	// pass WithCPUFallback.
	ErrCUDAUnavailable = errors.New("CUDA unavailable")
	// ErrClosed is returned by the methods of a Model after Close, and by
	// calls that Close stopped.
	ErrClosed = errors.New("model is closed")
)

// FieldError is the ErrBadRequest of a request field with a value out of its
// range: Field names the field of the request struct ("Steps", "EndTime",
// ...) and Problem says what is wrong with it, so that a program can point
// at its own name for it (a flag, a JSON key).
type FieldError struct {
	Field   string
	Problem string
}

// Error reads "bad request: Field problem".
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s %s", ErrBadRequest, e.Field, e.Problem)
}

// Is makes errors.Is(err, ErrBadRequest) true.
func (e *FieldError) Is(target error) bool { return target == ErrBadRequest }

// JSONName is the field's name in JSON, in the HTTP API (package api) and
// the command line's --json output: its words in lower case joined by "_"
// ("TopK" is "top_k", "EndTime" is "end_time").
func (e *FieldError) JSONName() string { return words(e.Field, '_') }

// FlagName is the command line's flag for the field: its words in lower case
// joined by "-" ("TopK" is "--top-k").
func (e *FieldError) FlagName() string { return "--" + words(e.Field, '-') }

// words writes a Go field name's words in lower case, joined by sep.
func words(name string, sep rune) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteRune(sep)
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func fieldError(field, format string, a ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, a...)}
}

// kindError gives an error one of the kinds above without changing its
// message.
type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// withKind returns err marked with kind (unless it already is).
func withKind(kind, err error) error {
	if err == nil || errors.Is(err, kind) {
		return err
	}
	return &kindError{kind: kind, err: err}
}

// isKinded reports whether err already matches one of the SDK's errors or
// the context's.
func isKinded(err error) bool {
	for _, k := range []error{ErrBadRequest, ErrBadModel, ErrRuntimeUnavailable, ErrCUDAUnavailable, ErrClosed,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// classify gives an error of the internal packages its kind: what the
// library, the device, the request or the model is to blame for. Errors of
// no known kind (ONNX Runtime failing a forward pass, say, for lack of
// memory) are returned as they are.
func classify(err error) error {
	switch {
	case err == nil, isKinded(err):
		return err
	case errors.Is(err, onnxrt.ErrLibraryNotFound), errors.Is(err, onnxrt.ErrLibraryLoad),
		errors.Is(err, onnxrt.ErrLibraryConflict):
		return withKind(ErrRuntimeUnavailable, err)
	case errors.Is(err, onnxrt.ErrCUDAUnavailable):
		return withKind(ErrCUDAUnavailable, err)
	case errors.Is(err, onnxrt.ErrClosed):
		return withKind(ErrClosed, err)
	case errors.Is(err, onnxrt.ErrInput), errors.Is(err, diffusion.ErrInvalidConfig),
		errors.Is(err, likelihood.ErrInvalidConfig), errors.Is(err, likelihood.ErrBadToken),
		errors.Is(err, tokenizer.ErrInvalidUTF8), errors.Is(err, tokenizer.ErrUnknownID):
		return withKind(ErrBadRequest, err)
	}
	for _, bad := range []error{
		onnxrt.ErrNotONNX, onnxrt.ErrEmptyNodeInput, onnxrt.ErrGraphMismatch, onnxrt.ErrModelLoad,
		diffusion.ErrNonFinite, diffusion.ErrScoreShape,
		manifest.ErrSyntax, manifest.ErrFormat, manifest.ErrKind, manifest.ErrGraph, manifest.ErrNoise,
		manifest.ErrMissing, manifest.ErrInvalid, manifest.ErrMismatch,
		tokenizer.ErrFormat, golden.ErrFormat, golden.ErrCorrupt, golden.ErrShape,
		modeldir.ErrNotRegular, modeldir.ErrTooLarge, modeldir.ErrChecksum, modeldir.ErrSize,
		fs.ErrNotExist, fs.ErrPermission,
	} {
		if errors.Is(err, bad) {
			return withKind(ErrBadModel, err)
		}
	}
	return err
}
