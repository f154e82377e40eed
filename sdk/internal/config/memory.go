package config

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// DefaultMemoryLimit returns the per-request memory limit used when no option
// sets one: half of the memory this process may use (the machine's memory,
// or the cgroup's limit when it is lower, as in a container), or 8 GiB when
// neither can be read.
func DefaultMemoryLimit() int64 {
	total := physicalMemory()
	if cg := cgroupLimit(); cg > 0 && (total == 0 || cg < total) {
		total = cg
	}
	if total <= 0 {
		return 8 << 30
	}
	return total / 2
}

// physicalMemory reads MemTotal from /proc/meminfo (0 when it cannot).
func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}

// cgroupLimit reads the memory limit of this process's cgroup (v2, then v1),
// or 0 when there is none.
func cgroupLimit() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err == nil && v > 0 && v < 1<<60 {
			return v
		}
	}
	return 0
}
