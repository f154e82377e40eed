package sdk_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
)

// smallTmpfs mounts a tmpfs of the given size (in KiB) for the test, or
// skips it, saying why, where the process may not mount one.
func smallTmpfs(t *testing.T, kib int) string {
	t.Helper()
	dir := t.TempDir()
	opts := "size=" + strconv.Itoa(kib) + "k"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a %d KiB tmpfs here (%v); the full-disk case needs one", kib, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestGraphCacheOnFullDisk opens a model whose cache directory lies on a
// file system with no room for the optimized graph: ONNX Runtime fails to
// write it, and the model must open without the cache, with a warning (as
// with a read-only cache), not fail. Two sizes: too small for the weights
// (64 KiB), and a larger one (4 MiB) filled up before the open.
func TestGraphCacheOnFullDisk(t *testing.T) {
	for _, tc := range []struct {
		name string
		kib  int
		fill bool
	}{{"64KiB", 64, false}, {"4MiB-full", 4 << 10, true}} {
		t.Run(tc.name, func(t *testing.T) {
			root := smallTmpfs(t, tc.kib)
			if tc.fill {
				f, err := os.Create(filepath.Join(root, "filler"))
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64<<10)
				for {
					if _, err := f.Write(buf); err != nil {
						break
					}
				}
				f.Close()
				// leave a little room, as a disk that is almost full does
				st, _ := os.Stat(f.Name())
				os.Truncate(f.Name(), st.Size()-16<<10)
			}
			cache := filepath.Join(root, "cache")
			dir := testlib.CopyDir(t, tinyAbsorb)
			in, log := openCached(t, dir, cache)
			if !strings.HasPrefix(in.GraphCache, "off") {
				t.Errorf("GraphCache = %q, want off (the cache disk is full)", in.GraphCache)
			}
			if !strings.Contains(log, "WARN") || !strings.Contains(log, "without") {
				t.Errorf("no warning that the model was loaded without the cache:\n%s", log)
			}
			// nothing half-written is left to take the space
			if ents, _ := os.ReadDir(cache); len(ents) != 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("the cache holds %q after a failed build", names)
			}
		})
	}
}

// TestGraphCacheTruncatedUnderARunningModel truncates the cached weights of
// a model opened from the cache, as another process or a disk cleaner could:
// the model maps its weights, and used to die of SIGBUS at its next forward
// pass. It must keep running with the weights it checked.
func TestGraphCacheTruncatedUnderARunningModel(t *testing.T) {
	dir := testlib.CopyDir(t, tinyAbsorb)
	root := t.TempDir()
	if in, _ := openCached(t, dir, root); in.GraphCache != "built" {
		t.Fatalf("first open: cache %q, want built", in.GraphCache)
	}
	m := open(t, dir, sdk.WithCacheDir(root))
	if in := m.Info(); in.GraphCache != "hit" {
		t.Fatalf("second open: cache %q, want hit", in.GraphCache)
	}
	data, _ := filepath.Glob(filepath.Join(root, "*", "graph.onnx.data"))
	if len(data) != 1 {
		t.Fatalf("cache entries' weights: %q, want one file", data)
	}
	if err := os.Truncate(data[0], 0); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".pin-*")); len(left) != 0 {
		t.Errorf("private copies left in the cache: %q", left)
	}
	rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
	if err != nil || !rep.OK {
		t.Fatalf("Verify after the cached weights were truncated: %+v, %v", rep, err)
	}
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 4, Batch: 2, Seed: 1}); err != nil {
		t.Fatalf("Sample after the cached weights were truncated: %v", err)
	}
}

// TestGraphCacheHitOnFullDisk opens a model whose cache entry exists on a
// disk that has since filled up: the private copy a hit loads (see
// ortcache.Pin) is made in the system's temporary directory instead, and
// where that is full too the model opens without the cache, with a warning,
// keeping the entry.
func TestGraphCacheHitOnFullDisk(t *testing.T) {
	root := smallTmpfs(t, 1<<10)
	cache := filepath.Join(root, "cache")
	dir := testlib.CopyDir(t, tinyAbsorb)
	if in, _ := openCached(t, dir, cache); in.GraphCache != "built" {
		t.Fatalf("first open: %q", in.GraphCache)
	}
	f, err := os.Create(filepath.Join(root, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 64<<10); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if in, log := openCached(t, dir, cache); in.GraphCache != "hit" {
		t.Errorf("with room in the temporary directory: cache %q, log %s", in.GraphCache, log)
	}
	t.Setenv("TMPDIR", root)
	in, log := openCached(t, dir, cache)
	if !strings.HasPrefix(in.GraphCache, "off") || !strings.Contains(log, "without") {
		t.Errorf("with no room anywhere: cache %q, log %s", in.GraphCache, log)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "*", "graph.onnx")); len(ents) != 1 {
		t.Errorf("the entry was not kept: %q", ents)
	}
}
