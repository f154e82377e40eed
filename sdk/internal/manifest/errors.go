package manifest

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Parse, ParseEvaluator, Load and
// LoadEvaluator wraps one of these, usually inside a *FieldError that names the
// offending field.
var (
	// ErrSyntax marks a manifest that is not valid JSON or whose fields have
	// the wrong JSON types.
	ErrSyntax = errors.New("malformed manifest")
	// ErrFormat marks a manifest whose "format" version this SDK does not know.
	// Such a manifest is refused, never guessed at.
	ErrFormat = errors.New("unsupported manifest format")
	// ErrKind marks a manifest of another kind than the one asked for: a
	// causal-lm evaluator manifest given to Parse, or a score-model manifest
	// given to ParseEvaluator.
	ErrKind = errors.New("wrong manifest kind")
	// ErrGraph marks an unknown diffusion graph (known: absorb, uniform).
	ErrGraph = errors.New("unknown graph")
	// ErrNoise marks an unknown noise schedule (known: loglinear, geometric)
	// or invalid schedule parameters.
	ErrNoise = errors.New("bad noise schedule")
	// ErrMissing marks a required field that is absent.
	ErrMissing = errors.New("missing required field")
	// ErrInvalid marks a field whose value is out of range or malformed.
	ErrInvalid = errors.New("invalid field")
	// ErrMismatch marks fields that contradict each other, such as a tokenizer
	// vocabulary size that differs from "tokens".
	ErrMismatch = errors.New("inconsistent fields")
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
