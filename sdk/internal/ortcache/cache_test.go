package ortcache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var key = Key{SourceSHA256: strings.Repeat("ab", 32), ORTVersion: "1.30.0", Provider: "cpu"}

// build writes an entry as ONNX Runtime would (graph and data files) and
// commits it.
func build(t *testing.T, c Cache, k Key, graph, data string) string {
	t.Helper()
	b, err := c.Begin(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.GraphPath(), []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	if data != "" {
		if err := os.WriteFile(b.GraphPath()+".data", []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := b.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func entries(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestMissBuildHit(t *testing.T) {
	c := Cache{Root: filepath.Join(t.TempDir(), "nested", "cache")}
	if g, problem, err := c.Lookup(key); g != "" || problem != "" || err != nil {
		t.Fatalf("empty cache: %q %q %v", g, problem, err)
	}
	p := build(t, c, key, "graph", "weights")
	g, problem, err := c.Lookup(key)
	if err != nil || problem != "" || g != p || filepath.Base(g) != GraphFile {
		t.Fatalf("after build: %q %q %v (built %q)", g, problem, err, p)
	}
	if raw, err := os.ReadFile(filepath.Join(filepath.Dir(g), DataFile)); err != nil || string(raw) != "weights" {
		t.Fatalf("data file: %q %v", raw, err)
	}
	if st, err := os.Stat(c.Root); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("cache root mode: %v %v", st.Mode(), err)
	}
	if n := entries(t, c.Root); len(n) != 1 {
		t.Errorf("cache holds %q, want one entry", n)
	}
	// a graph without an external-data file is an entry too
	k2 := key
	k2.SourceSHA256 = strings.Repeat("cd", 32)
	build(t, c, k2, "small graph", "")
	if g, problem, err := c.Lookup(k2); g == "" || problem != "" || err != nil {
		t.Fatalf("entry without data file: %q %q %v", g, problem, err)
	}
}

func TestCorruptEntriesAreDeletedNotUsed(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		want    string
	}{
		{"one byte of the weights changed", func(t *testing.T, dir string) {
			f := filepath.Join(dir, DataFile)
			raw, _ := os.ReadFile(f)
			raw[3] ^= 1
			os.WriteFile(f, raw, 0o644)
		}, "graph.onnx.data is corrupt"},
		{"truncated graph", func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, GraphFile), 2) }, "graph.onnx is corrupt"},
		{"data file deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, DataFile)) }, "graph.onnx.data:"},
		{"entry.json garbage", func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, EntryFile), []byte("{"), 0o600) }, "not valid JSON"},
		{"entry.json missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, EntryFile)) }, "incomplete entry"},
		{"entry.json huge", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, EntryFile), make([]byte, maxEntryJSON+1), 0o600)
		}, "unreadable entry.json"},
		{"built by another ONNX Runtime", func(t *testing.T, dir string) { rewrite(t, dir, func(e *entry) { e.ORTVersion = "1.29.0" }) }, "stale entry"},
		{"from another format", func(t *testing.T, dir string) { rewrite(t, dir, func(e *entry) { e.Format = 0 }) }, "stale entry"},
		{"files not listed", func(t *testing.T, dir string) { rewrite(t, dir, func(e *entry) { e.Files = nil }) }, "does not list"},
		{"data replaced by a directory", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, DataFile))
			os.Mkdir(filepath.Join(dir, DataFile), 0o700)
		}, "not a regular file"},
		// A FIFO opened for reading waits for a writer: it must be refused
		// before it is opened, not hang the process.
		{"graph replaced by a FIFO", func(t *testing.T, dir string) { fifo(t, filepath.Join(dir, GraphFile)) }, "not a regular file"},
		{"data replaced by a FIFO", func(t *testing.T, dir string) { fifo(t, filepath.Join(dir, DataFile)) }, "not a regular file"},
		{"entry.json replaced by a FIFO", func(t *testing.T, dir string) { fifo(t, filepath.Join(dir, EntryFile)) }, "unreadable entry.json"},
		{"data replaced by a link to /dev/zero", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, DataFile))
			if err := os.Symlink("/dev/zero", filepath.Join(dir, DataFile)); err != nil {
				t.Skip("no symbolic links here:", err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Cache{Root: t.TempDir()}
			p := build(t, c, key, "graph bytes", "the weights, many bytes of them")
			tt.corrupt(t, filepath.Dir(p))
			var g, problem string
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				g, problem, err = c.Lookup(key)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Lookup hangs")
			}
			if err != nil || g != "" || !strings.Contains(problem, tt.want) {
				t.Fatalf("Lookup = %q, %q, %v; want no graph and a problem containing %q", g, problem, err, tt.want)
			}
			if n := entries(t, c.Root); len(n) != 0 {
				t.Errorf("the bad entry was kept: %q", n)
			}
			// and the next build puts a good one in place
			build(t, c, key, "graph bytes", "the weights, many bytes of them")
			if g, problem, _ := c.Lookup(key); g == "" || problem != "" {
				t.Errorf("rebuilt entry: %q %q", g, problem)
			}
		})
	}
}

func rewrite(t *testing.T, dir string, f func(*entry)) {
	t.Helper()
	p := filepath.Join(dir, EntryFile)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	raw, _ = json.Marshal(e)
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStaleEntriesOfTheSourceAreRemovedOnBuild(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	old := key
	old.ORTVersion = "1.29.0"
	other := key
	other.SourceSHA256 = strings.Repeat("ef", 32)
	build(t, c, old, "old graph", "old")
	build(t, c, other, "other model", "x")
	if n := entries(t, c.Root); len(n) != 2 {
		t.Fatalf("entries %q", n)
	}
	// A new ONNX Runtime: a different key, whose build replaces the old entry of the same source.
	if g, problem, _ := c.Lookup(key); g != "" || problem != "" {
		t.Fatalf("new key found %q %q", g, problem)
	}
	build(t, c, key, "new graph", "new")
	names := entries(t, c.Root)
	if len(names) != 2 || !contains(names, key.dirName()) || !contains(names, other.dirName()) {
		t.Errorf("after the rebuild the cache holds %q; want the new entry and the other model's", names)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestConcurrentBuildsOfOneEntry(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i] = build(t, c, key, "graph", "weights")
		}()
	}
	wg.Wait()
	for _, p := range paths {
		if p != paths[0] {
			t.Errorf("builds returned %q and %q", paths[0], p)
		}
	}
	if n := entries(t, c.Root); len(n) != 1 {
		t.Errorf("cache holds %q, want exactly one entry and no build directories", n)
	}
	if g, problem, err := c.Lookup(key); g == "" || problem != "" || err != nil {
		t.Errorf("Lookup after concurrent builds: %q %q %v", g, problem, err)
	}
}

func TestAbortAndMissingGraph(t *testing.T) {
	c := Cache{Root: t.TempDir()}
	b, err := c.Begin(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(); err == nil || !strings.Contains(err.Error(), "did not write graph.onnx") {
		t.Errorf("Commit without a graph: %v", err)
	}
	b, _ = c.Begin(key)
	b.Abort()
	if n := entries(t, c.Root); len(n) != 0 {
		t.Errorf("left behind: %q", n)
	}
}

func TestKeys(t *testing.T) {
	for _, k := range []Key{{}, {SourceSHA256: "AB" + strings.Repeat("a", 62), ORTVersion: "1", Provider: "cpu"},
		{SourceSHA256: key.SourceSHA256, Provider: "cpu"}} {
		if _, _, err := (Cache{Root: t.TempDir()}).Lookup(k); err == nil {
			t.Errorf("Lookup accepted key %+v", k)
		}
	}
	a, b := key, key
	b.Provider = "cuda:0"
	if a.ID() == b.ID() || len(a.ID()) != 64 {
		t.Errorf("IDs %q %q", a.ID(), b.ID())
	}
	if !strings.HasPrefix(a.dirName(), a.SourceSHA256[:16]+"-") {
		t.Errorf("dirName %q", a.dirName())
	}
}

func TestDefaultRoot(t *testing.T) {
	t.Setenv("SEDD_CACHE_DIR", "/some/where")
	if got := DefaultRoot(); got != "/some/where" {
		t.Errorf("with SEDD_CACHE_DIR: %q", got)
	}
	t.Setenv("SEDD_CACHE_DIR", "")
	if runtime.GOOS != "linux" {
		return
	}
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got := DefaultRoot(); got != filepath.Join("/xdg", "sedd", "onnxruntime") {
		t.Errorf("with XDG_CACHE_HOME: %q", got)
	}
}

func TestTrustedSources(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("file identities are read on Linux only")
	}
	c := Cache{Root: t.TempDir()}
	src := filepath.Join(t.TempDir(), "model.onnx")
	os.WriteFile(src, []byte("model bytes"), 0o644)
	// A file written this instant is racy: not trusted, whatever its times say.
	if b, err := c.Begin(key); err == nil {
		os.WriteFile(b.GraphPath(), []byte("graph"), 0o644)
		b.Checked(src)
		b.Commit()
	}
	if c.Trusted(key, src) || c.Trust(key, src) {
		t.Fatal("a file changed just now was trusted")
	}
	c.Remove(key)
	defer func(w time.Duration) { racyWindow = w }(racyWindow)
	racyWindow = 0
	b, err := c.Begin(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(b.GraphPath(), []byte("graph"), 0o644)
	b.Checked(src)
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if !c.Trusted(key, src) {
		t.Fatal("the source checked at build time is not trusted")
	}
	other := filepath.Join(t.TempDir(), "copy.onnx")
	os.WriteFile(other, []byte("model bytes"), 0o644)
	if c.Trusted(key, other) {
		t.Fatal("a copy never checked is trusted")
	}
	if !c.Trust(key, other) || !c.Trusted(key, other) || !c.Trusted(key, src) {
		t.Fatal("Trust forgot a source or did not record one")
	}
	// Rewritten with the same bytes (a tick later): its status-change time moves, so it is read again.
	time.Sleep(50 * time.Millisecond)
	os.WriteFile(src, []byte("model bytes"), 0o644)
	if c.Trusted(key, src) {
		t.Error("a rewritten source is still trusted")
	}
	if g, problem, err := c.Lookup(key); g == "" || problem != "" || err != nil {
		t.Errorf("the entry after Trust: %q %q %v", g, problem, err)
	}
	if c.Trusted(key, filepath.Join(t.TempDir(), "missing")) {
		t.Error("a missing file is trusted")
	}
}

// fifo replaces path with a named pipe, or skips the test where there are
// none.
func fifo(t *testing.T, path string) {
	t.Helper()
	os.Remove(path)
	if err := mkfifo(path); err != nil {
		t.Skip("cannot make a FIFO here:", err)
	}
}
