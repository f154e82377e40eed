package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
)

const variantsFixture = "testdata/tiny-absorb-variants"

// withVariants returns a copy of tiny-absorb with the fp32-opt and int8
// variants of testdata/tiny-absorb-variants added; edit, when not nil,
// changes their sedd.json entries first.
func withVariants(t *testing.T, edit func(vs []map[string]any)) string {
	t.Helper()
	dir := testlib.CopyDir(t, tinyAbsorb)
	testlib.AddVariants(t, dir, variantsFixture, edit)
	return dir
}

// quality sets the int8 entry's measured quality verdict.
func quality(within bool) func(vs []map[string]any) {
	return func(vs []map[string]any) {
		vs[1]["quality"] = map[string]any{"within_limits": within, "summary": "bound +0.2%", "limits": "bound within 1%"}
	}
}

func TestPrecisionChoosesTheGraph(t *testing.T) {
	plain := withVariants(t, nil)
	measured := withVariants(t, quality(true))
	tooCostly := withVariants(t, quality(false))
	tests := []struct {
		dir, precision, variant, file, reason string
	}{
		{plain, "", "fp32-opt", "model.opt.onnx", "quality cost was not measured"},
		{plain, "auto", "fp32-opt", "model.opt.onnx", "auto"},
		{measured, "auto", "int8", "model.int8.onnx", "within the limits (bound +0.2%)"},
		{tooCostly, "auto", "fp32-opt", "model.opt.onnx", "past the limits (bound +0.2%)"},
		{plain, "fp32", "fp32-opt", "model.opt.onnx", "fp32"},
		{plain, "FP32", "fp32-opt", "model.opt.onnx", "fp32"},
		{plain, "int8", "int8", "model.int8.onnx", "int8"},
		{plain, "reference", "reference", "model.onnx", "reference"},
		{plain, "fp32-opt", "fp32-opt", "model.opt.onnx", "variant fp32-opt"},
		{tinyAbsorb, "auto", "reference", "model.onnx", "no optimized float32 variant"},
		{tinyAbsorb, "fp32", "reference", "model.onnx", "no optimized float32 variant"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir)+"/"+tt.precision, func(t *testing.T) {
			m := open(t, tt.dir, sdk.WithPrecision(tt.precision))
			in := m.Info()
			if in.Variant != tt.variant || in.ONNXFile != tt.file || !strings.Contains(in.VariantReason, tt.reason) {
				t.Errorf("Info: variant %q file %q reason %q; want %q, %q, reason containing %q",
					in.Variant, in.ONNXFile, in.VariantReason, tt.variant, tt.file, tt.reason)
			}
			running := 0
			for _, v := range in.Variants {
				if v.Running {
					running++
					if v.Name != tt.variant {
						t.Errorf("Variants marks %q running, want %q", v.Name, tt.variant)
					}
				}
			}
			if running != 1 || in.Variants[0].Name != "reference" {
				t.Errorf("Variants = %+v", in.Variants)
			}
		})
	}
}

func TestPrecisionErrors(t *testing.T) {
	plain := withVariants(t, nil)
	for _, tt := range []struct {
		dir, precision, want string
	}{
		{tinyAbsorb, "int8", "it has reference ("},
		{plain, "fp16", "it has reference, fp32-opt (fp32), int8 (int8)"},
		{plain, "bad\x00name", "use one of auto, fp32, int8, reference"},
	} {
		_, err := sdk.Open(tt.dir, sdk.WithPrecision(tt.precision))
		if !errors.Is(err, sdk.ErrBadRequest) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%s, %q): %v; want ErrBadRequest containing %q", filepath.Base(tt.dir), tt.precision, err, tt.want)
		}
	}
}

// TestEveryGraphVerifiesWithItsOwnTolerance: each variant meets the
// tolerance sedd.json records for it, int8's is its own (larger), and an
// int8 graph held to the float32 tolerance fails.
func TestEveryGraphVerifiesWithItsOwnTolerance(t *testing.T) {
	dir := withVariants(t, nil)
	var vs []map[string]any
	json.Unmarshal(testlib.ReadFile(t, filepath.Join(variantsFixture, "variants.json")), &vs)
	for _, p := range []string{"reference", "fp32-opt", "int8"} {
		m := open(t, dir, sdk.WithPrecision(p))
		rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
		if err != nil || !rep.OK || rep.Variant != p {
			t.Fatalf("%s: Verify %+v, %v", p, rep, err)
		}
		want := 1e-4
		if p == "int8" {
			want = vs[1]["tolerance"].(float64)
			if want <= 1e-4 || rep.MaxRel <= 1e-4 {
				t.Errorf("int8: tolerance %g, max error %g; both should be above float32's", want, rep.MaxRel)
			}
			if _, err := m.Verify(context.Background(), sdk.VerifyRequest{Tolerance: 1e-4}); !errors.Is(err, sdk.ErrBadModel) {
				t.Errorf("int8 held to 1e-4: %v, want ErrBadModel", err)
			}
		}
		if rep.Tolerance != want {
			t.Errorf("%s: tolerance %g, want %g", p, rep.Tolerance, want)
		}
	}
}

// TestInt8CostsLittleOnTheTinyModel runs every graph end to end: sampling
// works, and the int8 bound is within 1% of model.onnx's on the same text.
func TestInt8CostsLittleOnTheTinyModel(t *testing.T) {
	dir := withVariants(t, nil)
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 8)
	bounds := map[string]float64{}
	for _, p := range []string{"reference", "fp32", "int8"} {
		m := open(t, dir, sdk.WithPrecision(p))
		res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 8, Seed: 3, Batch: 2})
		if err != nil || len(res.Samples) != 2 {
			t.Fatalf("%s: Sample: %v", p, err)
		}
		ev, err := m.Evaluate(context.Background(), sdk.EvaluateRequest{Documents: []string{text}, Timesteps: 64, Seed: 1})
		if err != nil {
			t.Fatalf("%s: Evaluate: %v", p, err)
		}
		bounds[p] = ev.Bound.NatsPerToken
	}
	t.Logf("bound, nats per token: model.onnx %.6f, fp32-opt %.6f, int8 %.6f", bounds["reference"], bounds["fp32"], bounds["int8"])
	if d := math.Abs(bounds["fp32"]/bounds["reference"] - 1); d > 1e-5 {
		t.Errorf("fp32-opt bound %v vs model.onnx %v: relative difference %.2g", bounds["fp32"], bounds["reference"], d)
	}
	if d := math.Abs(bounds["int8"]/bounds["reference"] - 1); d > 0.01 || d == 0 {
		t.Errorf("int8 bound %v vs model.onnx %v: relative difference %.2g, want within 1%% (and not 0: it is another graph)",
			bounds["int8"], bounds["reference"], d)
	}
}

// logBuffer collects a model's warnings.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func cacheEntries(t *testing.T, root string) []string {
	t.Helper()
	ents, _ := os.ReadDir(root)
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(root, e.Name()))
	}
	return out
}

// openCached opens dir through the cache root, with a logger, and returns
// the Info and what was logged.
func openCached(t *testing.T, dir, root string, opts ...sdk.Option) (sdk.Info, string) {
	t.Helper()
	var log logBuffer
	m := open(t, dir, append([]sdk.Option{sdk.WithCacheDir(root), sdk.WithLogger(slog.New(slog.NewTextHandler(&log, nil)))}, opts...)...)
	rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
	if err != nil || !rep.OK {
		t.Fatalf("Verify through the cache: %+v, %v", rep, err)
	}
	in := m.Info()
	m.Close()
	return in, log.String()
}

func TestGraphCache(t *testing.T) {
	dir := withVariants(t, nil)
	root := t.TempDir()
	for _, p := range []string{"reference", "fp32", "int8"} {
		if in, _ := openCached(t, dir, root, sdk.WithPrecision(p)); in.GraphCache != "built" {
			t.Errorf("%s, first open: cache %q, want built", p, in.GraphCache)
		}
		if in, log := openCached(t, dir, root, sdk.WithPrecision(p)); in.GraphCache != "hit" || log != "" {
			t.Errorf("%s, second open: cache %q (log %q), want a silent hit", p, in.GraphCache, log)
		}
	}
	if n := len(cacheEntries(t, root)); n != 3 {
		t.Errorf("%d cache entries, want one per graph", n)
	}
	// A copy of the model elsewhere shares the entries.
	other := testlib.CopyDir(t, dir)
	if in, _ := openCached(t, other, root, sdk.WithPrecision("int8")); in.GraphCache != "hit" {
		t.Errorf("a copy of the directory: cache %q, want hit", in.GraphCache)
	}
}

func TestGraphCacheRefusesAndRebuildsCorruptEntries(t *testing.T) {
	for _, tt := range []struct {
		name    string
		corrupt func(t *testing.T, entry string)
		log     string
	}{
		{"flipped byte in the cached weights", func(t *testing.T, entry string) {
			p := filepath.Join(entry, "graph.onnx.data")
			raw := testlib.ReadFile(t, p)
			raw[len(raw)/2] ^= 0x40
			os.WriteFile(p, raw, 0o644)
		}, "graph.onnx.data is corrupt"},
		{"truncated cached graph", func(t *testing.T, entry string) {
			os.Truncate(filepath.Join(entry, "graph.onnx"), 100)
		}, "graph.onnx is corrupt"},
		{"entry of another ONNX Runtime", func(t *testing.T, entry string) {
			p := filepath.Join(entry, "entry.json")
			var e map[string]any
			json.Unmarshal(testlib.ReadFile(t, p), &e)
			e["onnxruntime"] = "1.0.0"
			raw, _ := json.Marshal(e)
			os.WriteFile(p, raw, 0o600)
		}, "stale entry"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := withVariants(t, nil)
			root := t.TempDir()
			openCached(t, dir, root, sdk.WithPrecision("int8"))
			entries := cacheEntries(t, root)
			if len(entries) != 1 {
				t.Fatalf("cache entries %q", entries)
			}
			tt.corrupt(t, entries[0])
			in, log := openCached(t, dir, root, sdk.WithPrecision("int8"))
			if in.GraphCache != "built" || !strings.Contains(log, tt.log) {
				t.Errorf("after corruption: cache %q, log %q; want built and a warning containing %q", in.GraphCache, log, tt.log)
			}
			if in, log := openCached(t, dir, root, sdk.WithPrecision("int8")); in.GraphCache != "hit" || log != "" {
				t.Errorf("after the rebuild: cache %q, log %q", in.GraphCache, log)
			}
		})
	}
}

// TestGraphCacheStillChecksTheModelDirectory: a cache hit does not make a
// broken model directory open.
func TestGraphCacheStillChecksTheModelDirectory(t *testing.T) {
	root := t.TempDir()
	for name, breakIt := range map[string]func(dir string){
		"flipped byte": func(dir string) {
			p := filepath.Join(dir, "model.int8.onnx")
			raw, _ := os.ReadFile(p)
			raw[len(raw)-10] ^= 1
			os.WriteFile(p, raw, 0o644)
		},
		"missing file": func(dir string) { os.Remove(filepath.Join(dir, "model.int8.onnx")) },
		"truncated":    func(dir string) { os.Truncate(filepath.Join(dir, "model.int8.onnx"), 1000) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := withVariants(t, nil)
			openCached(t, dir, root, sdk.WithPrecision("int8"))
			breakIt(dir)
			_, err := sdk.Open(dir, sdk.WithCacheDir(root), sdk.WithPrecision("int8"))
			if !errors.Is(err, sdk.ErrBadModel) || !strings.Contains(err.Error(), "model.int8.onnx") {
				t.Errorf("Open of a broken directory with its graph cached: %v, want ErrBadModel naming model.int8.onnx", err)
			}
		})
	}
}

func TestGraphCacheNotUsed(t *testing.T) {
	root := t.TempDir()
	m := open(t, tinyAbsorb, sdk.WithCacheDir(""))
	if got := m.Info().GraphCache; got != "off: no cache directory" {
		t.Errorf("WithCacheDir(\"\"): %q", got)
	}
	fsys, name := models.Default()
	b, err := sdk.OpenFS(fsys, name, sdk.WithCacheDir(root))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.Info().GraphCache; !strings.HasPrefix(got, "off: ") {
		t.Errorf("OpenFS: graph cache %q, want off", got)
	}
	if n := cacheEntries(t, root); len(n) != 0 {
		t.Errorf("OpenFS wrote to the cache: %q", n)
	}
}
