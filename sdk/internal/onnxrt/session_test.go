package onnxrt

import (
	"context"
	"errors"
	"fmt"
	"github.com/sedd-go/sedd/internal/testlib"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/sedd-go/sedd/sdk/internal/golden"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
)

// TestMain points the tests at the project's own ONNX Runtime install when
// ONNXRUNTIME_SHARED_LIBRARY_PATH is unset.
func TestMain(m *testing.M) { testlib.Main(m) }

// fixtures are the committed tiny exports (written by export/export.py; see
// their README.md).
var fixtures = []string{"../../testdata/tiny-absorb", "../../testdata/tiny-uniform"}

// needLibrary skips the test when no ONNX Runtime library can be found at
// all. CI installs one (scripts/install-onnxruntime.sh), so there the tests run.
func needLibrary(t *testing.T) Library {
	t.Helper()
	lib, err := FindLibrary("")
	if errors.Is(err, ErrLibraryNotFound) {
		t.Skipf("ONNX Runtime is not installed, so this test cannot run: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// fixture loads the manifest and golden cases of a committed tiny export.
func fixture(t *testing.T, dir string) (*manifest.Manifest, []golden.Case) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err != nil {
		t.Fatalf("fixture %s is missing (it is committed; export/export.py rewrites it): %v", dir, err)
	}
	m, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verify == nil {
		t.Fatalf("%s: sedd.json has no verify section", dir)
	}
	cases, err := golden.Load(filepath.Join(dir, m.Verify.Golden))
	if err != nil {
		t.Fatal(err)
	}
	return m, cases
}

func open(t *testing.T, dir string, opts ...Option) (*Session, *manifest.Manifest, []golden.Case) {
	t.Helper()
	m, cases := fixture(t, dir)
	s, err := Open(dir, m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, m, cases
}

func newScorer(t *testing.T, s *Session) *Scorer {
	t.Helper()
	sc, err := s.NewScorer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// TestGoldenFaithfulness runs every golden case of the committed exports
// through ONNX Runtime and compares with PyTorch's outputs: max|ONNX − PyTorch|
// ≤ 1e-4·max(1, max|PyTorch|) for both outputs, entries at input tokens
// exactly 0.
func TestGoldenFaithfulness(t *testing.T) {
	needLibrary(t)
	for _, dir := range fixtures {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			s, m, cases := open(t, dir)
			if s.N() != m.N() {
				t.Fatalf("session N = %d, manifest N = %d", s.N(), m.N())
			}
			sc := newScorer(t, s)
			for _, c := range cases {
				got, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				if got.Batch != c.Batch || got.Length != c.Length || got.N != c.N {
					t.Fatalf("%s: shape %d×%d×%d, want %d×%d×%d", c.Name, got.Batch, got.Length, got.N, c.Batch, c.Length, c.N)
				}
				r, err := golden.Check(c, got.LogScore, got.LSE)
				if err != nil {
					t.Fatalf("%s: %v", c.Name, err)
				}
				if !r.OK(golden.Tolerance) {
					t.Errorf("%s: %v", c.Name, r)
				} else {
					t.Logf("%s: %v", c.Name, r)
				}
			}
		})
	}
}

func TestScoreAllocatesNothing(t *testing.T) {
	needLibrary(t)
	s, _, cases := open(t, fixtures[0])
	sc := newScorer(t, s)
	c := cases[len(cases)-1]
	ctx := context.Background()
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := sc.Score(ctx, c.Indices, c.Sigma, c.Batch, c.Length); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("steady-state Score allocates %v times per call, want 0", allocs)
	}
}

// TestConcurrentScorers runs several scorers of one session from several
// goroutines (run it with -race) and checks their outputs against sequential
// calls.
func TestConcurrentScorers(t *testing.T) {
	needLibrary(t)
	s, _, cases := open(t, fixtures[0])
	want := make([][]float32, len(cases))
	seq := newScorer(t, s)
	for i, c := range cases {
		out, err := seq.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = append(slices.Clone(out.LogScore), out.LSE...)
	}
	const workers, rounds = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		sc := newScorer(t, s)
		wg.Go(func() {
			for r := range rounds {
				i := (w + r) % len(cases)
				c := cases[i]
				out, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(append(slices.Clone(out.LogScore), out.LSE...), want[i]) {
					errs <- fmt.Errorf("worker %d, case %s: concurrent output differs from the sequential one", w, c.Name)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestScoreCancellation(t *testing.T) {
	needLibrary(t)
	s, m, cases := open(t, fixtures[0])
	sc := newScorer(t, s)
	c := cases[0]

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sc.Score(ctx, c.Indices, c.Sigma, c.Batch, c.Length); !errors.Is(err, context.Canceled) {
		t.Errorf("Score with a cancelled context: %v, want context.Canceled", err)
	}

	// A forward pass long enough that cancellation arrives while it runs.
	const batch, length = 4, 1024
	x := make([]int64, batch*length)
	for i := range x {
		x[i] = int64(i % m.Tokens)
	}
	sigma := []float32{1, 1, 1, 1}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(5*time.Millisecond, cancel)
	if _, err := sc.Score(ctx, x, sigma, batch, length); !errors.Is(err, context.Canceled) {
		t.Errorf("Score cancelled mid-pass: %v, want context.Canceled", err)
	}

	// The terminate flag must be cleared for later calls, cancellable or not.
	for _, ctx := range []context.Context{context.Background(), t.Context()} {
		got, err := sc.Score(ctx, c.Indices, c.Sigma, c.Batch, c.Length)
		if err != nil {
			t.Fatalf("Score after a cancelled call: %v", err)
		}
		if r, _ := golden.Check(c, got.LogScore, got.LSE); !r.OK(golden.Tolerance) {
			t.Errorf("Score after a cancelled call: %v", r)
		}
	}
}

func TestScoreRejectsBadInput(t *testing.T) {
	needLibrary(t)
	s, m, _ := open(t, fixtures[0])
	sc := newScorer(t, s)
	n := int64(m.N())
	nan := float32(0)
	nan = nan / nan
	tests := []struct {
		name          string
		x             []int64
		sigma         []float32
		batch, length int
	}{
		{"token id N", []int64{0, n}, []float32{1}, 1, 2},
		{"negative token id", []int64{-1, 0}, []float32{1}, 1, 2},
		{"sigma zero", []int64{0, 1}, []float32{0}, 1, 2},
		{"sigma negative", []int64{0, 1}, []float32{-1}, 1, 2},
		{"sigma NaN", []int64{0, 1}, []float32{nan}, 1, 2},
		{"sigma infinite", []int64{0, 1}, []float32{1 / (nan - nan + 0)}, 1, 2},
		{"too few ids", []int64{0}, []float32{1}, 1, 2},
		{"too many sigmas", []int64{0, 1}, []float32{1, 1}, 1, 2},
		{"zero batch", nil, nil, 0, 2},
		{"zero length", nil, []float32{1}, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := sc.Score(context.Background(), tt.x, tt.sigma, tt.batch, tt.length); !errors.Is(err, ErrInput) {
				t.Fatalf("Score error = %v, want ErrInput", err)
			}
		})
	}
}

func TestOpenRefusesBadModels(t *testing.T) {
	needLibrary(t)
	m, _ := fixture(t, fixtures[0])
	modelPath := filepath.Join(fixtures[0], m.ONNX.File)
	data, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		n    int
		want error
	}{
		{"truncated file", writeTemp(t, "half.onnx", data[:len(data)/2]), m.N(), ErrNotONNX},
		{"not onnx", writeTemp(t, "text.onnx", []byte("hello\n")), m.N(), ErrNotONNX},
		{"empty LayerNormalization input", writeTemp(t, "ln.onnx",
			scoreModel(int64(m.N()), node("ln2", "LayerNormalization", "y", "", ""))), m.N(), ErrEmptyNodeInput},
		{"vocabulary dimension differs", modelPath, m.N() + 1, ErrGraphMismatch},
		{"contract names but a graph ONNX Runtime refuses", writeTemp(t, "dangling.onnx", scoreModel(int64(m.N()))), m.N(), ErrModelLoad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := References()
			s, err := OpenFile(tt.path, tt.n)
			if err == nil {
				s.Close()
				t.Fatal("OpenFile succeeded")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenFile error = %v, want %v", err, tt.want)
			}
			if References() != before {
				t.Errorf("a failed OpenFile leaked an environment reference (%d → %d)", before, References())
			}
		})
	}
	t.Run("size differs from manifest", func(t *testing.T) {
		mm := *m
		mm.ONNX.Size = int64(len(data)) + 1
		if _, err := Open(fixtures[0], &mm); !errors.Is(err, ErrNotONNX) {
			t.Fatalf("Open error = %v, want ErrNotONNX", err)
		}
	})
}

// TestScanMatchesONNXRuntime checks the Go scanner against ONNX Runtime's own
// view of the committed models.
func TestScanMatchesONNXRuntime(t *testing.T) {
	needLibrary(t)
	env, err := Acquire("")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Release()
	for _, dir := range fixtures {
		m, _ := fixture(t, dir)
		path := filepath.Join(dir, m.ONNX.File)
		g, err := ScanONNX(path)
		if err != nil {
			t.Fatal(err)
		}
		ins, outs, err := ort.GetInputOutputInfo(path)
		if err != nil {
			t.Fatal(err)
		}
		compare := func(kind string, ours []ValueInfo, theirs []ort.InputOutputInfo) {
			if len(ours) != len(theirs) {
				t.Fatalf("%s: %d %ss, ONNX Runtime sees %d", dir, len(ours), kind, len(theirs))
			}
			for i := range ours {
				if ours[i].Name != theirs[i].Name || int(ours[i].ElemType) != int(theirs[i].DataType) ||
					!slices.Equal(ours[i].Dims, []int64(theirs[i].Dimensions)) {
					t.Errorf("%s: %s %d: scanned %+v, ONNX Runtime %v", dir, kind, i, ours[i], theirs[i].String())
				}
			}
		}
		compare("input", g.Inputs, ins)
		compare("output", g.Outputs, outs)
	}
}

func TestCUDAOnCPUBuild(t *testing.T) {
	needLibrary(t)
	m, cases := fixture(t, fixtures[0])
	_, err := Open(fixtures[0], m, WithCUDA(0))
	if err == nil {
		t.Skip("this ONNX Runtime library has a working CUDA provider; the CPU-build behaviour cannot be tested here")
	}
	var ce *CUDAError
	if !errors.Is(err, ErrCUDAUnavailable) || !errors.As(err, &ce) || ce.DeviceID != 0 {
		t.Fatalf("Open with CUDA on a CPU build: %v, want a *CUDAError wrapping ErrCUDAUnavailable", err)
	}
	t.Logf("error text: %v", err)

	s, err := Open(fixtures[0], m, WithCUDA(0), WithCPUFallback())
	if err != nil {
		t.Fatalf("Open with CPU fallback: %v", err)
	}
	defer s.Close()
	if s.Provider() != "cpu" || !errors.Is(s.FellBack(), ErrCUDAUnavailable) {
		t.Errorf("Provider() = %q, FellBack() = %v; want cpu and ErrCUDAUnavailable", s.Provider(), s.FellBack())
	}
	sc := newScorer(t, s)
	c := cases[0]
	got, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := golden.Check(c, got.LogScore, got.LSE); !r.OK(golden.Tolerance) {
		t.Errorf("fallback session output: %v", r)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	needLibrary(t)
	m, cases := fixture(t, fixtures[0])
	before := References()
	s, err := Open(fixtures[0], m)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := s.NewScorer()
	if err != nil {
		t.Fatal(err)
	}
	c := cases[0]
	if _, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Session.Close: %v", err)
		}
	}
	if _, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length); !errors.Is(err, ErrClosed) {
		t.Errorf("Score after Session.Close: %v, want ErrClosed", err)
	}
	if _, err := s.NewScorer(); !errors.Is(err, ErrClosed) {
		t.Errorf("NewScorer after Close: %v, want ErrClosed", err)
	}
	for range 2 {
		if err := sc.Close(); err != nil {
			t.Fatalf("Scorer.Close: %v", err)
		}
	}
	if _, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length); !errors.Is(err, ErrClosed) {
		t.Errorf("Score after Scorer.Close: %v, want ErrClosed", err)
	}
	if References() != before {
		t.Errorf("environment references %d after closing everything, want %d", References(), before)
	}
}

func BenchmarkScore(b *testing.B) {
	if _, err := FindLibrary(""); err != nil {
		b.Skip(err)
	}
	m, err := manifest.Load(fixtures[0])
	if err != nil {
		b.Skip(err)
	}
	s, err := Open(fixtures[0], m)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sc, err := s.NewScorer()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	const batch, length = 1, 128
	x := make([]int64, batch*length)
	sigma := []float32{1}
	ctx := context.Background()
	for b.Loop() {
		if _, err := sc.Score(ctx, x, sigma, batch, length); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch*length)/b.Elapsed().Seconds(), "tokens/s")
}

// TestCUDAErrorHints checks the advice for each stage at which ONNX Runtime's
// CUDA provider was seen failing: the messages are ONNX Runtime 1.29's and
// 1.30's own (a core that cannot load providers; a CPU build without the
// providers beside it; a provider whose CUDA libraries are missing; a provider
// that loaded on a machine without a GPU driver).
func TestCUDAErrorHints(t *testing.T) {
	tests := []struct {
		name, cause, want string
	}{
		{"core without the provider interface", "CUDA execution provider is not enabled in this build.",
			"cannot load the CUDA provider"},
		{"CPU build alone", "Failed to load library /x/libonnxruntime_providers_shared.so with error: " +
			"/x/libonnxruntime_providers_shared.so: cannot open shared object file: No such file or directory",
			"CPU-only build"},
		{"CUDA libraries missing", "Failed to load library /x/libonnxruntime_providers_cuda.so with error: " +
			"libcurand.so.10: cannot open shared object file: No such file or directory", "LD_LIBRARY_PATH"},
		{"no driver", "Failed to parse provider option \"device_id\": CUDA failure 35: CUDA driver version is " +
			"insufficient for CUDA runtime version ; GPU=-1", "no usable GPU"},
		{"no such device", "CUDA failure 101: invalid device ordinal", "no usable GPU"},
		{"anything else", "something new", "install a GPU build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &CUDAError{DeviceID: 1, Library: "/x/libonnxruntime.so", Cause: errors.New(tt.cause)}
			msg := e.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.cause) || !strings.Contains(msg, "device 1") {
				t.Errorf("message %q: want the cause, the device and %q", msg, tt.want)
			}
			if !errors.Is(e, ErrCUDAUnavailable) {
				t.Errorf("%v does not match ErrCUDAUnavailable", e)
			}
		})
	}
}

// TestCUDAOptionsKeepFloat32 pins the CUDA provider's options: the device,
// and TF32 off (ONNX Runtime's default is on, which would put the GPU's
// results outside the float32 tolerance of the golden checks).
func TestCUDAOptionsKeepFloat32(t *testing.T) {
	got := cudaOptions(3)
	want := map[string]string{"device_id": "3", "use_tf32": "0"}
	if len(got) != len(want) {
		t.Fatalf("cudaOptions(3) = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("cudaOptions(3)[%q] = %q, want %q", k, got[k], v)
		}
	}
}
