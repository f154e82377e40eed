//go:build sedd_nomodels

package models

import "embed"

// Embedded reports whether this build carries the shipped models: this one,
// built with the tag sedd_nomodels, does not. Default and Evaluator then
// return empty directories, which sdk.OpenFS refuses (fs.ErrNotExist).
const Embedded = false

var sedd, twin embed.FS
