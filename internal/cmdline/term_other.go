//go:build !linux

package cmdline

import "os"

// IsTerminal reports whether f is a character device (a terminal, most
// likely) and TERM is not "dumb".
func IsTerminal(f *os.File) bool {
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// TermSize returns 80×24: the size is not looked up on this system.
func TermSize(*os.File) (cols, rows int) { return 80, 24 }
