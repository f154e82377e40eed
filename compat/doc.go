// Package compat holds the tests that drive `sedd serve` with third-party
// clients. It is a module of its own so that their dependencies stay out of
// the SDK's.
package compat
