//go:build !linux

package ortcache

// statSource has no status-change time to rely on outside Linux: sources are
// never trusted without reading them.
func statSource(path string) (SourceStat, bool) { return SourceStat{}, false }
