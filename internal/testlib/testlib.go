// Package testlib is what the project's tests share: it points them at the
// project's own ONNX Runtime install (the SDK itself never searches the
// working directory for the library; tests call Setup, or Main from
// TestMain, so that `go test ./...` in a checkout finds it without
// ONNXRUNTIME_SHARED_LIBRARY_PATH), and copies and reads fixture files.
package testlib

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// EnvLibraryPath is the variable naming ONNX Runtime's shared library.
const EnvLibraryPath = "ONNXRUNTIME_SHARED_LIBRARY_PATH"

// Path returns $ONNXRUNTIME_SHARED_LIBRARY_PATH, else
// third_party/onnxruntime/libonnxruntime.so of the working directory or a
// parent, else "".
func Path() string {
	if p := os.Getenv(EnvLibraryPath); p != "" {
		return p
	}
	dir, err := os.Getwd()
	for err == nil {
		p := filepath.Join(dir, "third_party", "onnxruntime", "libonnxruntime.so")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
		up := filepath.Dir(dir)
		if up == dir {
			break
		}
		dir = up
	}
	return ""
}

// Setup sets ONNXRUNTIME_SHARED_LIBRARY_PATH to Path() when it is unset and
// the project's install exists.
func Setup() {
	if os.Getenv(EnvLibraryPath) == "" {
		if p := Path(); p != "" {
			os.Setenv(EnvLibraryPath, p)
		}
	}
}

// Main is TestMain for packages whose tests run models: Setup, then the
// tests, with the optimized-graph cache in a temporary directory of their
// own (SEDD_CACHE_DIR), never the user's.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it returns the tests' exit code, for a
// TestMain with checks of its own after the tests.
func Run(m *testing.M) int {
	Setup()
	dir, err := os.MkdirTemp("", "sedd-test-cache-")
	if err != nil {
		panic(err)
	}
	os.Setenv("SEDD_CACHE_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	return code
}

// CopyDir copies the regular files of directory src (a model, say) into a new
// temporary directory of the test, to break it without touching the original.
func CopyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data := ReadFile(t, filepath.Join(src, e.Name()))
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// ReadFile returns the contents of path, failing the test if it cannot.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// EnvInt reads the positive integer environment variable name (a benchmark's
// setting), or def when it is unset.
func EnvInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// Rehash records in dir/sedd.json the sha256 of the tokenizer and golden
// files as they are now, for tests that change a file on purpose to reach a
// check behind the checksum (a tokenizer of the wrong size, a golden value
// off). Fields the manifest does not have stay absent; a sedd.json that is
// missing or not JSON (broken on purpose) is left alone.
func Rehash(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, "sedd.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		return
	}
	var doc map[string]any
	if json.Unmarshal(raw, &doc) != nil {
		return
	}
	sum := func(name any) string {
		s, _ := name.(string)
		data, err := os.ReadFile(filepath.Join(dir, s))
		if err != nil {
			return ""
		}
		h := sha256.Sum256(data)
		return hex.EncodeToString(h[:])
	}
	if tok, ok := doc["tokenizer"].(map[string]any); ok {
		if _, had := tok["sha256"]; had {
			tok["sha256"] = sum(tok["file"])
		}
	}
	if v, ok := doc["verify"].(map[string]any); ok {
		if _, had := v["golden_sha256"]; had {
			v["golden_sha256"] = sum(v["golden"])
		}
		if _, had := v["data_sha256"]; had {
			v["data_sha256"] = sum(v["data"])
		}
	}
	out, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// AddVariants copies the variant files of fixture (model.opt.onnx,
// model.int8.onnx and variants.json, their sedd.json entries, as in
// sdk/testdata/tiny-absorb-variants) into the model directory dir and lists
// them in its sedd.json; edit, when not nil, changes the entries first.
func AddVariants(t testing.TB, dir, fixture string, edit func(vs []map[string]any)) {
	t.Helper()
	var vs []map[string]any
	if err := json.Unmarshal(ReadFile(t, filepath.Join(fixture, "variants.json")), &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		f := v["file"].(string)
		if err := os.WriteFile(filepath.Join(dir, f), ReadFile(t, filepath.Join(fixture, f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(vs)
	}
	var doc map[string]any
	if err := json.Unmarshal(ReadFile(t, filepath.Join(dir, "sedd.json")), &doc); err != nil {
		t.Fatal(err)
	}
	doc["variants"] = vs
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sedd.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}
