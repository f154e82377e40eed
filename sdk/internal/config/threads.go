package config

import (
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
)

// DefaultThreads is the intra-op thread count used when no option sets one:
// the physical cores among the CPUs this process may run on (its CPU
// affinity), at most the CPUs its cgroup's quota allows (a container's CPU
// limit). A second hardware thread of a core shares that core's vector units,
// so ONNX Runtime's matrix kernels gain little from it and lose to the extra
// synchronisation; on machines where the topology cannot be read it is the
// number of logical CPUs.
var DefaultThreads = sync.OnceValue(func() int {
	n := physicalCores(sysCPU, allowedCPUs())
	if n <= 0 {
		n = goruntime.NumCPU()
	}
	if q := cgroupCPUs(); q > 0 && q < n {
		n = q
	}
	return max(1, n)
})

const sysCPU = "/sys/devices/system/cpu"

// allowedCPUs returns the ids of the CPUs this process may run on, from
// /proc/self/status (nil when it cannot be read).
func allowedCPUs() []int {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(strings.TrimSpace(rest))
		}
	}
	return nil
}

// parseCPUList reads a kernel CPU list such as "0-3,8,10-11"; nil when it is
// malformed.
func parseCPUList(s string) []int {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<16 {
				return nil
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out
}

// physicalCores counts the distinct (package, core) pairs of cpus under the
// sysfs CPU directory root; 0 when any cannot be read.
func physicalCores(root string, cpus []int) int {
	if len(cpus) == 0 {
		return 0
	}
	cores := map[[2]string]bool{}
	for _, c := range cpus {
		dir := filepath.Join(root, "cpu"+strconv.Itoa(c), "topology")
		pkg, err1 := os.ReadFile(filepath.Join(dir, "physical_package_id"))
		core, err2 := os.ReadFile(filepath.Join(dir, "core_id"))
		if err1 != nil || err2 != nil {
			return 0
		}
		cores[[2]string{strings.TrimSpace(string(pkg)), strings.TrimSpace(string(core))}] = true
	}
	return len(cores)
}

// cgroupCPUs returns the CPUs the cgroup's CPU quota allows, rounded up
// (cgroup v2 cpu.max, then v1 cfs quota and period), or 0 for no quota.
func cgroupCPUs() int {
	if raw, err := os.ReadFile("/sys/fs/cgroup/cpu.max"); err == nil {
		f := strings.Fields(string(raw))
		if len(f) == 2 && f[0] != "max" {
			return quotaCPUs(f[0], f[1])
		}
		return 0
	}
	q, err1 := os.ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
	p, err2 := os.ReadFile("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
	if err1 != nil || err2 != nil {
		return 0
	}
	return quotaCPUs(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func quotaCPUs(quota, period string) int {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0
	}
	return int(math.Ceil(q / p))
}
