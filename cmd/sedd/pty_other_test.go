//go:build !linux

package main

import (
	"errors"
	"os"
)

// openPTY is only implemented on Linux; terminal tests skip elsewhere.
func openPTY(cols, rows uint16) (master, slave *os.File, err error) {
	return nil, nil, errors.New("pseudo-terminal tests run on Linux only")
}
