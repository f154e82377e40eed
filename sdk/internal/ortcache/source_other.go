//go:build !linux

package ortcache

import "os"

// statSource has no status-change time to rely on outside Linux: sources are
// never trusted without reading them.
func statSource(path string) (SourceStat, bool) { return SourceStat{}, false }

// openNoBlock opens path for reading; openRegular has checked that it is a
// regular file.
func openNoBlock(path string) (*os.File, error) { return os.Open(path) }
