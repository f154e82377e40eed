package models

import "embed"

// The shipped evaluator: models/brown-sedd-small-ar, the autoregressive twin
// of the shipped model (same tokenizer and data), exported by
// export/train/reproduce.sh. It adds about 9 MB to programs that import this
// package; delete this file to build without it.
//
//go:embed brown-sedd-small-ar
var shippedEvalFS embed.FS

func init() { shippedEval, shippedEvalName = shippedEvalFS, "brown-sedd-small-ar" }
