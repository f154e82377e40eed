package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/sedd-go/sedd/sdk/internal/kind"
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
	ErrBadRequest = kind.ErrBadRequest
	// ErrBadModel marks a model directory that cannot be used, or a network
	// that misbehaves: a missing or special file, a file over its size
	// limit, a manifest, tokenizer or ONNX file that is malformed, truncated
	// or does not match sedd.json (size, sha256, vocabulary, graph), golden
	// outputs that the network no longer reproduces (Verify), or a network
	// that returns NaN or infinite scores. Export the model again.
	ErrBadModel = kind.ErrBadModel
	// ErrRuntimeUnavailable marks an ONNX Runtime shared library that cannot
	// be found or loaded, or a second, different library asked for in a
	// process that already runs one. Install ONNX Runtime, or point
	// WithLibraryPath or ONNXRUNTIME_SHARED_LIBRARY_PATH at it.
	ErrRuntimeUnavailable = kind.ErrRuntimeUnavailable
	// ErrCUDAUnavailable marks a CUDA device that was asked for but cannot be
	// used (usually a CPU-only build of ONNX Runtime). Run on the CPU, or
	// pass WithCPUFallback.
	ErrCUDAUnavailable = kind.ErrCUDAUnavailable
	// ErrClosed is returned by the methods of a Model after Close, and by
	// calls that Close stopped.
	ErrClosed = kind.ErrClosed
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

// withKind returns err marked with kind (unless it already has a kind).
// Errors get their kind where they are born: a package's sentinels are made
// with kind.New, and an error made here is wrapped with its kind at once.
func withKind(k, err error) error { return kind.Wrap(k, err) }

// hasKind reports whether err matches one of the SDK's errors or the
// context's.
func hasKind(err error) bool {
	return kind.Of(err) != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// observed, when the tests set it, sees every error a public function or
// method of the package returns (observe), so that a test can check that
// each has exactly one kind.
var observed func(error)

// observe passes *err to observed.
func observe(err *error) {
	if *err != nil && observed != nil {
		observed(*err)
	}
}
