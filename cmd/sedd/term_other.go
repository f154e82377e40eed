//go:build !linux

package main

import "os"

// isTerminal reports whether f is a character device (a terminal, most
// likely) and TERM is not "dumb".
func isTerminal(f *os.File) bool {
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// termWidth returns 80: the width is not looked up on this system.
func termWidth(*os.File) int { return 80 }
