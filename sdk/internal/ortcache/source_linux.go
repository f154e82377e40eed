package ortcache

import (
	"os"
	"syscall"
)

// statSource reads the identity of a regular file: device, inode, size,
// modification and status-change times. The kernel sets the status-change
// time on every write, rename or chmod, and no system call sets it back, so a
// file whose identity is unchanged has not been modified since.
func statSource(path string) (SourceStat, bool) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return SourceStat{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return SourceStat{}, false
	}
	return SourceStat{Path: path, Dev: uint64(sys.Dev), Ino: sys.Ino, Size: st.Size(),
		MtimeNs: sys.Mtim.Nano(), CtimeNs: sys.Ctim.Nano()}, true
}
