package config

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0":          {0},
		"0-3":        {0, 1, 2, 3},
		"0-1,4,6-7":  {0, 1, 4, 6, 7},
		"":           nil,
		"a-b":        nil,
		"3-1":        nil,
		"0-99999999": nil,
	} {
		if got := parseCPUList(in); !slices.Equal(got, want) {
			t.Errorf("parseCPUList(%q) = %v, want %v", in, got, want)
		}
	}
}

// fakeTopology writes sysfs topology files: cpu i on core cores[i] of
// package 0.
func fakeTopology(t *testing.T, cores []int) string {
	root := t.TempDir()
	for i, c := range cores {
		dir := filepath.Join(root, "cpu"+strconv.Itoa(i), "topology")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "physical_package_id"), []byte("0\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "core_id"), []byte(strconv.Itoa(c)+"\n"), 0o644)
	}
	return root
}

func TestPhysicalCores(t *testing.T) {
	// 4 cores with 2 hardware threads each: cpus 0-3 and 4-7 are siblings.
	root := fakeTopology(t, []int{0, 1, 2, 3, 0, 1, 2, 3})
	for _, tt := range []struct {
		cpus []int
		want int
	}{
		{[]int{0, 1, 2, 3, 4, 5, 6, 7}, 4},
		{[]int{0, 4}, 1}, // one core's two threads
		{[]int{0, 1}, 2},
		{[]int{0, 9}, 0}, // cpu9 has no topology: unknown
		{nil, 0},
	} {
		if got := physicalCores(root, tt.cpus); got != tt.want {
			t.Errorf("physicalCores(%v) = %d, want %d", tt.cpus, got, tt.want)
		}
	}
}

func TestQuota(t *testing.T) {
	for _, tt := range []struct {
		q, p string
		want int
	}{{"200000", "100000", 2}, {"150000", "100000", 2}, {"50000", "100000", 1}, {"-1", "100000", 0}, {"x", "1", 0}} {
		if got := quotaCPUs(tt.q, tt.p); got != tt.want {
			t.Errorf("quotaCPUs(%s, %s) = %d, want %d", tt.q, tt.p, got, tt.want)
		}
	}
}

func TestDefaultThreadsOnThisMachine(t *testing.T) {
	n := DefaultThreads()
	if n < 1 || n > goruntime.NumCPU() {
		t.Errorf("DefaultThreads() = %d with %d logical CPUs", n, goruntime.NumCPU())
	}
	if goruntime.GOOS == "linux" {
		if cores := physicalCores(sysCPU, allowedCPUs()); cores > 0 && n > cores {
			t.Errorf("DefaultThreads() = %d, more than the %d physical cores", n, cores)
		}
	}
}
