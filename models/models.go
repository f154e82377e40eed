// Package models ships SEDD models inside the programs that import it, so
// that the sedd command samples with no flags from any directory. The model
// files are embedded in the binary and opened from there; nothing is written
// to disk.
//
//	fsys, name := models.Default()
//	m, err := sdk.OpenFS(fsys, name)
//
// The shipped model's autoregressive twin, which measures the generative
// perplexity of its samples, ships the same way (Evaluator, for
// perplexity.OpenFS). A program that does not call Evaluator does not carry
// it: the linker leaves it out. Built with the tag sedd_nomodels, a program
// carries neither (Embedded is false) and must be given a model directory.
package models

import (
	"embed"
	"io/fs"
)

// Default returns the shipped model's directory, for sdk.OpenFS, and the name
// to open it under ("built-in model brown-sedd-small").
func Default() (fs.FS, string) {
	return sub(sedd, "brown-sedd-small"), "built-in model brown-sedd-small"
}

// Evaluator returns the shipped evaluator's directory, for perplexity.OpenFS,
// and the name to open it under.
func Evaluator() (fs.FS, string) {
	return sub(twin, "brown-sedd-small-ar"), "built-in evaluator brown-sedd-small-ar"
}

func sub(fsys embed.FS, dir string) fs.FS {
	s, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant embedded above: it is always there
	}
	return s
}
