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

// openNoBlock opens path read-only without waiting (O_NONBLOCK: a FIFO
// opens at once instead of waiting for a writer) and without following a
// symbolic link (O_NOFOLLOW), then turns blocking reads back on for the
// regular file it is expected to be.
func openNoBlock(path string) (*os.File, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
