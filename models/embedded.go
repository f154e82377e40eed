//go:build !sedd_nomodels

package models

import "embed"

// Embedded reports whether this build carries the shipped models. A build
// with the tag sedd_nomodels leaves them out (a binary about 34 MB smaller,
// for machines where the model directories are at hand anyway).
const Embedded = true

// The shipped model, models/brown-sedd-small, trained and exported by
// export/train/reproduce.sh.
//
//go:embed brown-sedd-small
var sedd embed.FS

// The shipped evaluator, models/brown-sedd-small-ar: the autoregressive twin
// of the shipped model (same tokenizer and data).
//
//go:embed brown-sedd-small-ar
var twin embed.FS
