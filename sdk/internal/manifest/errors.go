package manifest

import (
	"fmt"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Sentinel errors. Every error returned by Parse, ParseEvaluator, Load and
// LoadEvaluator wraps one of these, usually inside a *FieldError that names the
// offending field.
var (
	// ErrSyntax marks a manifest that is not valid JSON or whose fields have
	// the wrong JSON types.
	ErrSyntax = kind.New(kind.ErrBadModel, "malformed manifest")
	// ErrFormat marks a manifest whose "format" version this SDK does not know.
	// Such a manifest is refused, never guessed at.
	ErrFormat = kind.New(kind.ErrBadModel, "unsupported manifest format")
	// ErrKind marks a manifest of another kind than the one asked for: a
	// causal-lm evaluator manifest given to Parse, or a score-model manifest
	// given to ParseEvaluator.
	ErrKind = kind.New(kind.ErrBadModel, "wrong manifest kind")
	// ErrGraph marks an unknown diffusion graph (known: absorb, uniform).
	ErrGraph = kind.New(kind.ErrBadModel, "unknown graph")
	// ErrNoise marks an unknown noise schedule (known: loglinear, geometric)
	// or invalid schedule parameters.
	ErrNoise = kind.New(kind.ErrBadModel, "bad noise schedule")
	// ErrMissing marks a required field that is absent.
	ErrMissing = kind.New(kind.ErrBadModel, "missing required field")
	// ErrInvalid marks a field whose value is out of range or malformed.
	ErrInvalid = kind.New(kind.ErrBadModel, "invalid field")
	// ErrMismatch marks fields that contradict each other, such as a tokenizer
	// vocabulary size that differs from "tokens".
	ErrMismatch = kind.New(kind.ErrBadModel, "inconsistent fields")
)

// FieldError reports a problem with one field of a manifest. Field is the
// dotted JSON path ("noise.eps", "tokenizer.vocab_size"); Err is one of the
// sentinel errors of this package, so errors.Is(err, ErrMissing) and friends
// work on it.
type FieldError struct {
	Field  string
	Err    error
	Detail string
}

// Error renders the field, the sentinel's text and the detail.
func (e *FieldError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("sedd.json: %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("sedd.json: %s: %v: %s", e.Field, e.Err, e.Detail)
}

// Unwrap returns the sentinel error.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error, format string, args ...any) error {
	return &FieldError{Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}
