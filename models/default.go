package models

import "embed"

// The shipped model: models/brown-sedd-small, exported by
// export/train/reproduce.sh.
//
//go:embed brown-sedd-small
var shippedFS embed.FS

func init() { shipped, shippedName = shippedFS, "brown-sedd-small" }
