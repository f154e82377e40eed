package sdk_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"
)

const (
	tinyAbsorb  = "testdata/tiny-absorb"
	tinyUniform = "testdata/tiny-uniform"
)

// open opens dir with one intra-op thread and closes it when the test ends.
func open(t testing.TB, dir string, opts ...sdk.Option) *sdk.Model {
	t.Helper()
	m, err := sdk.Open(dir, append([]sdk.Option{sdk.WithThreads(1)}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestVerifyFixtures(t *testing.T) {
	for _, dir := range []string{tinyAbsorb, tinyUniform} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := open(t, dir)
			rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !rep.OK || len(rep.Cases) == 0 || rep.MaxRel > 1e-4 {
				t.Fatalf("Verify report not OK: %+v", rep)
			}
		})
	}
}

// TestSampleConditioning runs the real network through ONNX Runtime and checks
// that fixed tokens survive, masks are gone after denoising, and a seed
// reproduces the tokens.
func TestSampleConditioning(t *testing.T) {
	tests := []struct {
		name  string
		dir   string
		req   sdk.SampleRequest
		fixed map[int]string // position → text expected there (bytes tokenizer: one token per byte)
	}{
		{"unconditional absorb analytic", tinyAbsorb, sdk.SampleRequest{Steps: 8, Batch: 2, Seed: 1}, nil},
		{"unconditional absorb euler", tinyAbsorb, sdk.SampleRequest{Steps: 8, Sampler: sdk.Euler, Seed: 2}, nil},
		{"prefix", tinyAbsorb, sdk.SampleRequest{Steps: 8, Batch: 3, Prefix: "Once", Seed: 3}, map[int]string{0: "Once"}},
		{"suffix", tinyAbsorb, sdk.SampleRequest{Steps: 8, Suffix: "end.", Seed: 4}, map[int]string{28: "end."}},
		{"middle span", tinyAbsorb, sdk.SampleRequest{Steps: 8, Spans: []sdk.Span{{Pos: 10, Text: "mid"}}, Seed: 5}, map[int]string{10: "mid"}},
		{"prefix suffix and span", tinyAbsorb, sdk.SampleRequest{Steps: 4, Prefix: "A", Suffix: "Z", Spans: []sdk.Span{{Pos: 16, Tokens: []int64{'q'}}}, Seed: 6},
			map[int]string{0: "A", 31: "Z", 16: "q"}},
		{"uniform analytic with prefix", tinyUniform, sdk.SampleRequest{Steps: 8, Batch: 2, Prefix: "Hi", Seed: 7}, map[int]string{0: "Hi"}},
		{"uniform euler", tinyUniform, sdk.SampleRequest{Steps: 8, Sampler: sdk.Euler, Suffix: "!", Seed: 8}, map[int]string{31: "!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := open(t, tt.dir)
			res, err := m.Sample(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Sample: %v", err)
			}
			batch := max(tt.req.Batch, 1)
			if len(res.Samples) != batch {
				t.Fatalf("got %d samples, want %d", len(res.Samples), batch)
			}
			if res.NetworkCalls != tt.req.Steps+1 {
				t.Errorf("NetworkCalls = %d, want %d (steps + denoiser)", res.NetworkCalls, tt.req.Steps+1)
			}
			if res.Network <= 0 || res.Network > res.Elapsed {
				t.Errorf("Network = %v, want in (0, Elapsed = %v]", res.Network, res.Elapsed)
			}
			info := m.Info()
			for k, s := range res.Samples {
				if len(s.Tokens) != info.Length {
					t.Fatalf("sample has %d tokens, want %d", len(s.Tokens), info.Length)
				}
				for i, tok := range s.Tokens {
					if tok < 0 || tok >= int64(info.Tokens) {
						t.Fatalf("token %d at %d is not a vocabulary token (mask left after denoising?)", tok, i)
					}
				}
				for pos, text := range tt.fixed {
					for i := range len(text) {
						if s.Tokens[pos+i] != int64(text[i]) {
							t.Fatalf("sample %d: position %d = %d, want fixed %q", k, pos+i, s.Tokens[pos+i], text[i])
						}
					}
				}
			}
			again, err := m.Sample(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Sample again: %v", err)
			}
			for i := range res.Samples {
				if !slices.Equal(res.Samples[i].Tokens, again.Samples[i].Tokens) {
					t.Fatalf("same seed gave different tokens:\n%v\n%v", res.Samples[i].Tokens, again.Samples[i].Tokens)
				}
			}
		})
	}
}

// For the absorbing graph with log-linear noise, e^{σ(t)−σ(t−Δt)} − 1 = Δt·σ'(t)
// exactly, so the Euler and analytic steps are the same distribution
// (export/tests/test_refmath.py proves it on the formulas) and the same seed
// must give the same samples. This is why the step-count sweep of the
// shipped model shows one curve for both.
func TestAbsorbLogLinearEulerEqualsAnalytic(t *testing.T) {
	m := open(t, tinyAbsorb)
	for _, steps := range []int{1, 4, 32} {
		req := sdk.SampleRequest{Steps: steps, Batch: 4, Seed: uint64(steps)}
		a, err := m.Sample(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		req.Sampler = sdk.Euler
		e, err := m.Sample(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for b := range a.Samples {
			if !slices.Equal(a.Samples[b].Tokens, e.Samples[b].Tokens) {
				t.Errorf("%d steps, row %d: analytic %v, euler %v", steps, b, a.Samples[b].Tokens, e.Samples[b].Tokens)
			}
		}
	}
}

func TestSampleWithoutDenoiseKeepsMasksPossible(t *testing.T) {
	m := open(t, tinyAbsorb)
	// One step from t=1 with no denoiser leaves most positions masked.
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 1, NoDenoise: true, EndTime: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	masks := 0
	for _, tok := range res.Samples[0].Tokens {
		if tok == int64(m.Info().MaskID) {
			masks++
		}
	}
	if masks == 0 {
		t.Fatalf("no masks after one short step without denoising: %v", res.Samples[0].Tokens)
	}
	if res.NetworkCalls != 1 {
		t.Fatalf("NetworkCalls = %d, want 1", res.NetworkCalls)
	}
}

func TestInfillKeepsLiterals(t *testing.T) {
	m := open(t, tinyAbsorb)
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Template: "ab[MASK:3]cd[MASK]e", Steps: 8, Batch: 2, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Samples {
		if len(s.Tokens) != 9 {
			t.Fatalf("infill returned %d tokens, want the template's 9", len(s.Tokens))
		}
		for pos, want := range map[int]byte{0: 'a', 1: 'b', 5: 'c', 6: 'd', 8: 'e'} {
			if s.Tokens[pos] != int64(want) {
				t.Fatalf("literal %q at %d replaced by %d: %v", want, pos, s.Tokens[pos], s.Tokens)
			}
		}
	}
}

func TestStreamAndStop(t *testing.T) {
	m := open(t, tinyAbsorb)
	var steps []int
	for st, err := range m.Stream(context.Background(), sdk.SampleRequest{Steps: 10}) {
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, st.Index)
		if st.Steps != 11 || len(st.Tokens) != 1 || len(st.Tokens[0]) != 32 || st.Result != nil {
			t.Errorf("step %d: %d steps, %d rows, result %v", st.Index, st.Steps, len(st.Tokens), st.Result)
		}
		if st.Index == 3 {
			break
		}
	}
	if !slices.Equal(steps, []int{1, 2, 3}) {
		t.Fatalf("the stream yielded steps %v, want [1 2 3]", steps)
	}
	// The model stays usable.
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 2}); err != nil {
		t.Fatalf("Sample after a stopped run: %v", err)
	}
}

// TestStreamEqualsSample: the stream's last step carries the result Sample
// gives for the same request, and every step before it shows masks
// disappearing without a position ever changing once unmasked.
func TestStreamEqualsSample(t *testing.T) {
	m := open(t, tinyAbsorb)
	req := sdk.SampleRequest{Steps: 12, Batch: 2, Seed: 4, Prefix: "ab"}
	want, err := m.Sample(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	mask := int64(m.Info().MaskID)
	var prev [][]int64
	var last sdk.Step
	n := 0
	for st, err := range m.Stream(context.Background(), req) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		for b, row := range st.Tokens {
			for i, tok := range row {
				if prev != nil && prev[b][i] != mask && prev[b][i] != tok {
					t.Fatalf("step %d: row %d position %d changed from %d to %d", st.Index, b, i, prev[b][i], tok)
				}
			}
		}
		prev = make([][]int64, len(st.Tokens))
		for b, row := range st.Tokens {
			prev[b] = slices.Clone(row)
		}
		last = st
	}
	if n != 13 || last.Index != 13 || last.Result == nil || last.Masked != 0 {
		t.Fatalf("%d steps, last %d, result %v, %d masked", n, last.Index, last.Result != nil, last.Masked)
	}
	for b := range want.Samples {
		if !slices.Equal(last.Result.Samples[b].Tokens, want.Samples[b].Tokens) || !slices.Equal(last.Tokens[b], want.Samples[b].Tokens) {
			t.Fatalf("row %d: stream %v, sample %v", b, last.Result.Samples[b].Tokens, want.Samples[b].Tokens)
		}
	}
	// An infill stream shows only the template's positions.
	for st, err := range m.Stream(context.Background(), sdk.SampleRequest{Template: "x[MASK:3]y", Steps: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Tokens[0]) != 5 {
			t.Fatalf("infill step %d shows %d positions, want the template's 5", st.Index, len(st.Tokens[0]))
		}
	}
	// A bad request is the stream's one and only value.
	k := 0
	for _, err := range m.Stream(context.Background(), sdk.SampleRequest{Steps: -1}) {
		k++
		if !errors.Is(err, sdk.ErrBadRequest) {
			t.Fatalf("bad request: %v", err)
		}
	}
	if k != 1 {
		t.Fatalf("a bad request yielded %d values", k)
	}
}

func TestCancelStopsWithinOneEvaluation(t *testing.T) {
	m := open(t, tinyAbsorb)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	var err error
	for st, e := range m.Stream(ctx, sdk.SampleRequest{Steps: 50}) {
		if e != nil {
			err = e
			break
		}
		calls++
		if st.Index == 5 {
			cancel()
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream error = %v, want context.Canceled", err)
	}
	if calls > 6 {
		t.Fatalf("run went on for %d steps after cancel at step 5", calls-5)
	}
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 2}); err != nil {
		t.Fatalf("Sample after cancel: %v", err)
	}
}

// TestConcurrentSamplesMatchSequential shares one Model between goroutines.
func TestConcurrentSamplesMatchSequential(t *testing.T) {
	m := open(t, tinyAbsorb)
	const n = 6
	want := make([][]int64, n)
	for i := range n {
		res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 6, Seed: uint64(100 + i), Prefix: "x"})
		if err != nil {
			t.Fatal(err)
		}
		want[i] = res.Samples[0].Tokens
	}
	got := make([][]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 6, Seed: uint64(100 + i), Prefix: "x"})
			if err != nil {
				errs[i] = err
				return
			}
			got[i] = res.Samples[0].Tokens
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("seed %d: concurrent tokens differ from sequential", 100+i)
		}
	}
}

func TestBadRequests(t *testing.T) {
	m := open(t, tinyAbsorb)
	long := string(make([]byte, 40))
	tests := []struct {
		name string
		req  sdk.SampleRequest
		want error
	}{
		{"negative steps", sdk.SampleRequest{Steps: -1}, sdk.ErrBadRequest},
		{"end time above 1", sdk.SampleRequest{EndTime: 2}, sdk.ErrBadRequest},
		{"end time negative", sdk.SampleRequest{EndTime: -0.1}, sdk.ErrBadRequest},
		{"negative batch", sdk.SampleRequest{Batch: -2}, sdk.ErrBadRequest},
		{"negative length", sdk.SampleRequest{Length: -2}, sdk.ErrBadRequest},
		{"prefix longer than the model", sdk.SampleRequest{Prefix: "x" + long}, sdk.ErrBadRequest},
		{"prefix and suffix together too long", sdk.SampleRequest{Prefix: long[:20], Suffix: long[:20]}, sdk.ErrBadRequest},
		{"span past the end", sdk.SampleRequest{Spans: []sdk.Span{{Pos: 30, Text: "abc"}}}, sdk.ErrBadRequest},
		{"token out of range", sdk.SampleRequest{Spans: []sdk.Span{{Pos: 0, Tokens: []int64{256}}}}, sdk.ErrBadRequest},
		{"overlapping spans", sdk.SampleRequest{Prefix: "abc", Spans: []sdk.Span{{Pos: 2, Text: "x"}}}, sdk.ErrBadRequest},
		{"unknown sampler", sdk.SampleRequest{Sampler: "tweedie"}, sdk.ErrBadRequest},
		{"template with a prefix", sdk.SampleRequest{Template: "a[MASK]", Prefix: "b"}, sdk.ErrBadRequest},
		{"template longer than the model", sdk.SampleRequest{Template: "[MASK:40]"}, sdk.ErrBadRequest},
		{"malformed template", sdk.SampleRequest{Template: "a [MASK:"}, sdk.ErrBadRequest},
		{"invalid UTF-8", sdk.SampleRequest{Prefix: "\xff\xfe"}, sdk.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Sample(context.Background(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Sample error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenRefusesBrokenDirectories(t *testing.T) {
	tests := []struct {
		name   string
		breaks func(t *testing.T, dir string)
		want   error
	}{
		{"missing sedd.json", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "sedd.json")) }, os.ErrNotExist},
		{"unknown format", func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "sedd.json"), `"format": 1`, `"format": 7`)
		}, manifest.ErrFormat},
		{"flipped byte in model.onnx", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.onnx")
			data, _ := os.ReadFile(p)
			data[len(data)/2] ^= 0xff
			os.WriteFile(p, data, 0o644)
		}, modeldir.ErrChecksum},
		{"missing tokenizer", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "tokenizer.json")) }, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureCopy(t, tinyAbsorb)
			tt.breaks(t, dir)
			m, err := sdk.Open(dir, sdk.WithThreads(1))
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded on a broken model directory")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := sdk.Open(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing dir: %v", err)
	}
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if !strings.Contains(s, old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	os.WriteFile(path, []byte(strings.Replace(s, old, new, 1)), 0o644)
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	m, err := sdk.Open(tinyAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{}); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("Sample after Close: %v, want ErrClosed", err)
	}
}
