package sdk_test

// Hardening tests (issue 8): broken model directories, hostile requests, a
// network that produces NaN or Inf, many goroutines on one Model,
// cancellation, long runs and Close. Everything goes through the public API
// (sdk.Open, Sample, Infill, Verify) on copies of the committed fixtures.
// Model files that ONNX Runtime must never see, or that compute NaN on
// purpose, are written by the small protobuf encoder at the end of this file.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/likelihood"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/tokenizer"
)

const (
	hAbsorb  = tinyAbsorb
	hUniform = tinyUniform
)

// fixtureCopy copies the files of a fixture directory into a new temporary
// directory.
func fixtureCopy(t *testing.T, src string) string { return testlib.CopyDir(t, src) }

func readFile(t *testing.T, path string) []byte { return testlib.ReadFile(t, path) }

// editManifest decodes dir/sedd.json, lets edit change it and writes it back.
func editManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, manifest.FileName)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setModel writes data as dir/model.onnx and records its size and sha256 in
// sedd.json, so that only the model's contents can be refused.
func setModel(t *testing.T, dir string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	editManifest(t, dir, func(m map[string]any) {
		o := m["onnx"].(map[string]any)
		o["size"] = len(data)
		o["sha256"] = hex.EncodeToString(sum[:])
	})
}

// editTokenizer decodes dir/tokenizer.json, lets edit change it and writes it
// back.
func editTokenizer(t *testing.T, dir string, edit func(doc map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "tokenizer.json")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if data, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOpenBrokenModels opens copies of tiny-absorb broken in one way each.
// Every refusal must be an error matching the listed sentinel (and, where
// given, the listed error type), Open must not leak an ONNX Runtime reference,
// and none of the files that would crash ONNX Runtime may reach it.
func TestOpenBrokenModels(t *testing.T) {
	absorbModel := readFile(t, filepath.Join(hAbsorb, "model.onnx"))
	uniformModel := readFile(t, filepath.Join(hUniform, "model.onnx"))
	var graphErr *onnxrt.GraphError
	var fieldErr *manifest.FieldError
	tests := []struct {
		name   string
		breaks func(t *testing.T, dir string)
		want   error
		as     any // a pointer to an error type that errors.As must find, or nil
	}{
		{"tokenizer.json with two ids swapped, same size, hash unchanged", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tokenizer.json")
			data := readFile(t, p)
			a, b := bytes.Index(data, []byte(`"a":97`)), bytes.Index(data, []byte(`"b":98`))
			if a < 0 || b < 0 {
				t.Fatal("test setup: no \"a\":97 and \"b\":98 in tokenizer.json")
			}
			copy(data[a+len(`"a":`):], "98")
			copy(data[b+len(`"b":`):], "97")
			os.WriteFile(p, data, 0o644)
		}, modeldir.ErrChecksum, nil},
		{"missing model.onnx", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.onnx"))
		}, fs.ErrNotExist, nil},
		{"missing model.onnx without checksum check", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.onnx"))
			editManifest(t, dir, func(m map[string]any) { delete(m["onnx"].(map[string]any), "sha256") })
		}, fs.ErrNotExist, nil},
		{"model.onnx is a directory", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model.onnx"))
			os.Mkdir(filepath.Join(dir, "model.onnx"), 0o755)
		}, modeldir.ErrNotRegular, nil},
		{"truncated model.onnx with matching size and sha256", func(t *testing.T, dir string) {
			setModel(t, dir, absorbModel[:len(absorbModel)*2/3])
		}, onnxrt.ErrNotONNX, nil},
		{"model.onnx cut after one byte", func(t *testing.T, dir string) {
			setModel(t, dir, absorbModel[:1])
		}, onnxrt.ErrNotONNX, nil},
		{"empty model.onnx", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "model.onnx"), nil, 0o644)
			editManifest(t, dir, func(m map[string]any) {
				o := m["onnx"].(map[string]any)
				delete(o, "size")
				delete(o, "sha256")
			})
		}, onnxrt.ErrNotONNX, nil},
		{"truncated model.onnx, size checked before anything is read", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "model.onnx"), absorbModel[:1000], 0o644)
		}, modeldir.ErrSize, nil},
		{"truncated model.onnx without checksum, size check", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "model.onnx"), absorbModel[:1000], 0o644)
			editManifest(t, dir, func(m map[string]any) { delete(m["onnx"].(map[string]any), "sha256") })
		}, modeldir.ErrSize, nil},
		{"flipped byte in model.onnx", func(t *testing.T, dir string) {
			data := bytes.Clone(absorbModel)
			data[len(data)/2] ^= 0xff
			os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644)
		}, modeldir.ErrChecksum, nil},
		{"random bytes as model.onnx", func(t *testing.T, dir string) {
			data := make([]byte, 64<<10)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			setModel(t, dir, data)
		}, onnxrt.ErrNotONNX, nil},
		{"text file as model.onnx", func(t *testing.T, dir string) {
			setModel(t, dir, []byte("version https://git-lfs.github.com/spec/v1\noid sha256:0000\nsize 273669\n"))
		}, onnxrt.ErrNotONNX, nil},
		{"sedd.json as model.onnx", func(t *testing.T, dir string) {
			setModel(t, dir, readFile(t, filepath.Join(dir, "sedd.json")))
		}, onnxrt.ErrNotONNX, nil},
		{"uniform network under the absorb manifest (N 256, want 257)", func(t *testing.T, dir string) {
			setModel(t, dir, uniformModel)
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"255 tokens in sedd.json and tokenizer, network has 257 states", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) {
				m["tokens"] = 255
				m["tokenizer"].(map[string]any)["vocab_size"] = 255
			})
			editTokenizer(t, dir, func(doc map[string]any) {
				vocab := doc["model"].(map[string]any)["vocab"].(map[string]any)
				for k, v := range vocab {
					if v.(float64) == 255 {
						delete(vocab, k)
					}
				}
			})
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"input renamed to input_ids", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, indicesName: "input_ids"}.encode())
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"int32 indices", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, indicesType: onnxInt32}.encode())
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"float64 sigma", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, sigmaType: onnxDouble}.encode())
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"float16 log_score", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, scoreType: onnxFloat16}.encode())
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"log_score_lse missing", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, noLSE: true}.encode())
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"vocabulary dimension 300 in a crafted graph", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 300}.encode())
		}, onnxrt.ErrGraphMismatch, &graphErr},
		{"empty LayerNormalization input (crashes ONNX Runtime)", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, emptyLayerNormInput: true}.encode())
		}, onnxrt.ErrEmptyNodeInput, &graphErr},
		{"operator ONNX Runtime does not know", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257, unknownOp: true}.encode())
		}, onnxrt.ErrModelLoad, nil},
		{"unknown manifest format", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["format"] = 2 })
		}, manifest.ErrFormat, &fieldErr},
		{"unknown graph", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["graph"] = "absorbing" })
		}, manifest.ErrGraph, &fieldErr},
		{"unknown noise type", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["noise"].(map[string]any)["type"] = "cosine" })
		}, manifest.ErrNoise, &fieldErr},
		{"noise eps 1", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["noise"].(map[string]any)["eps"] = 1 })
		}, manifest.ErrNoise, &fieldErr},
		{"causal-lm manifest", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["kind"] = "causal-lm" })
		}, manifest.ErrKind, &fieldErr},
		{"sedd.json is not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "sedd.json"), []byte("format: 1\n"), 0o644)
		}, manifest.ErrSyntax, nil},
		{"sedd.json names a model outside the directory", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["onnx"].(map[string]any)["file"] = "../model.onnx" })
		}, manifest.ErrInvalid, &fieldErr},
		{"sha256 mismatch", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) {
				m["onnx"].(map[string]any)["sha256"] = "0000000000000000000000000000000000000000000000000000000000000000"
			})
		}, modeldir.ErrChecksum, nil},
		{"tokenizer with 255 tokens", func(t *testing.T, dir string) {
			editTokenizer(t, dir, func(doc map[string]any) {
				vocab := doc["model"].(map[string]any)["vocab"].(map[string]any)
				for k, v := range vocab {
					if v.(float64) == 255 {
						delete(vocab, k)
					}
				}
			})
		}, manifest.ErrMismatch, nil},
		{"tokenizer with an added token 256", func(t *testing.T, dir string) {
			editTokenizer(t, dir, func(doc map[string]any) {
				doc["added_tokens"] = []any{map[string]any{"id": 256, "content": "<|endoftext|>", "special": true}}
			})
		}, manifest.ErrMismatch, nil},
		{"truncated tokenizer.json", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "tokenizer.json")
			data := readFile(t, p)
			os.WriteFile(p, data[:len(data)/2], 0o644)
		}, tokenizer.ErrFormat, nil},
		{"tokenizer.json without a vocabulary", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model": {"type": "BPE", "vocab": {}}}`), 0o644)
		}, tokenizer.ErrFormat, nil},
		{"tokenizer.json of another model type", func(t *testing.T, dir string) {
			editTokenizer(t, dir, func(doc map[string]any) { doc["model"].(map[string]any)["type"] = "WordPiece" })
		}, tokenizer.ErrFormat, nil},
		{"tokenizer id near the int64 limit", func(t *testing.T, dir string) {
			editTokenizer(t, dir, func(doc map[string]any) {
				doc["model"].(map[string]any)["vocab"].(map[string]any)["huge"] = int64(1) << 62
			})
		}, tokenizer.ErrFormat, nil},
		{"added token id of two billion", func(t *testing.T, dir string) {
			editTokenizer(t, dir, func(doc map[string]any) {
				doc["added_tokens"] = []any{map[string]any{"id": 2_000_000_000, "content": "<x>", "special": true}}
			})
		}, tokenizer.ErrFormat, nil},
		{"missing tokenizer.json", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "tokenizer.json"))
		}, fs.ErrNotExist, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureCopy(t, hAbsorb)
			tt.breaks(t, dir)
			// The cases aim at the checks behind the tokenizer's and golden
			// files' checksums: record their hashes as they are now, except
			// where the checksum itself is what is tested.
			if !errors.Is(tt.want, modeldir.ErrChecksum) {
				testlib.Rehash(t, dir)
			}
			before := onnxrt.References()
			m, err := sdk.Open(dir, sdk.WithThreads(1))
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded on a broken model directory")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open error = %v\nwant one matching %v", err, tt.want)
			}
			if tt.as != nil && !errors.As(err, tt.as) {
				t.Fatalf("Open error = %v\nis not a %T", err, tt.as)
			}
			if after := onnxrt.References(); after != before {
				t.Errorf("a failed Open changed the ONNX Runtime references from %d to %d", before, after)
			}
			t.Logf("%v", err)
		})
	}
}

// TestOpenSpecialFiles puts a FIFO, a link to /dev/zero and a huge sparse
// file in place of each file of a model directory: Open (and Verify, for the
// golden files) must refuse each at once with ErrBadModel, without reading
// it: a FIFO would block forever and /dev/zero never ends.
func TestOpenSpecialFiles(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero on this system")
	}
	kinds := map[string]func(path string) error{
		"fifo":      func(p string) error { return mkfifo(p) },
		"/dev/zero": func(p string) error { return os.Symlink("/dev/zero", p) },
		"8 GiB sparse file": func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(8 << 30)
		},
	}
	for _, file := range []string{"sedd.json", "tokenizer.json", "model.onnx", "golden.json", "golden.bin"} {
		for kind, create := range kinds {
			t.Run(file+" as "+kind, func(t *testing.T) {
				dir := fixtureCopy(t, hAbsorb)
				p := filepath.Join(dir, file)
				os.Remove(p)
				if err := create(p); err != nil {
					t.Skipf("cannot make a %s: %v", kind, err)
				}
				done := make(chan error, 1)
				go func() {
					m, err := sdk.Open(dir, sdk.WithThreads(1))
					if err == nil {
						_, err = m.Verify(context.Background(), sdk.VerifyRequest{})
						m.Close()
					}
					done <- err
				}()
				select {
				case err := <-done:
					if !errors.Is(err, sdk.ErrBadModel) {
						t.Fatalf("%s as %s: %v, want ErrBadModel", file, kind, err)
					}
					if !errors.Is(err, modeldir.ErrNotRegular) && !errors.Is(err, modeldir.ErrTooLarge) && !errors.Is(err, modeldir.ErrSize) {
						t.Fatalf("%s as %s: %v, want a refusal before reading", file, kind, err)
					}
					t.Logf("%v", err)
				case <-time.After(10 * time.Second):
					t.Fatalf("%s as %s: Open did not return within 10 s", file, kind)
				}
			})
		}
	}
}

// TestOpenCUDAWithoutGPU asks for CUDA. With a CPU-only ONNX Runtime (the
// project's default install) Open must fail with a *onnxrt.CUDAError
// matching onnxrt.ErrCUDAUnavailable, and fall back to the CPU, with a
// warning, only when WithCPUFallback is given.
func TestOpenCUDAWithoutGPU(t *testing.T) {
	refs := onnxrt.References()
	m, err := sdk.Open(hAbsorb, sdk.WithThreads(1), sdk.WithDevice("cuda:0"))
	if err == nil {
		defer m.Close()
		if info := m.Info(); !strings.HasPrefix(info.Provider, "cuda") {
			t.Fatalf("CUDA asked for and Open succeeded, but the model runs on %q", info.Provider)
		}
		t.Skip("this ONNX Runtime has a working CUDA provider")
	}
	var ce *onnxrt.CUDAError
	if !errors.Is(err, onnxrt.ErrCUDAUnavailable) || !errors.As(err, &ce) {
		t.Fatalf("Open on CUDA without one: %v, want a *onnxrt.CUDAError matching ErrCUDAUnavailable", err)
	}
	if got := onnxrt.References(); got != refs {
		t.Errorf("a failed Open changed the ONNX Runtime references from %d to %d", refs, got)
	}
	var logs logLines
	m = open(t, hAbsorb, sdk.WithDevice("cuda:0"), sdk.WithCPUFallback(), logs.option())
	warned := logs.get()
	if info := m.Info(); !info.FellBackToCPU || info.Provider != "cpu" {
		t.Fatalf("with WithCPUFallback: provider %q, fell back %v; want cpu, true", info.Provider, info.FellBackToCPU)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "CUDA") {
		t.Errorf("warnings %q; want one about the CUDA fallback", warned)
	}
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 2}); err != nil {
		t.Fatalf("Sample after the CPU fallback: %v", err)
	}
}

// TestCraftedGraphs checks the stand-in networks of this file against ONNX
// Runtime: the contract-following one opens and samples (so the refusals
// above are for the reason named), and one with a dynamic vocabulary axis is
// measured at Open.
func TestCraftedGraphs(t *testing.T) {
	tests := []struct {
		name string
		g    scoreGraph
		want error // nil: Open and Sample succeed
	}{
		{"contract, static N", scoreGraph{n: 257}, nil},
		{"contract, dynamic N", scoreGraph{n: -1, outN: 257}, nil},
		{"dynamic N computing 300 states", scoreGraph{n: -1, outN: 300}, onnxrt.ErrGraphMismatch},
		{"dynamic N computing 256 states", scoreGraph{n: -1, outN: 256}, onnxrt.ErrGraphMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureCopy(t, hAbsorb)
			setModel(t, dir, tt.g.encode())
			before := onnxrt.References()
			m, err := sdk.Open(dir, sdk.WithThreads(1))
			if tt.want != nil {
				if err == nil {
					m.Close()
					t.Fatal("Open succeeded")
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("Open error = %v, want %v", err, tt.want)
				}
				if after := onnxrt.References(); after != before {
					t.Errorf("a failed Open changed the ONNX Runtime references from %d to %d", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer m.Close()
			res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 4, Batch: 2})
			if err != nil {
				t.Fatalf("Sample: %v", err)
			}
			for _, smp := range res.Samples {
				for _, tok := range smp.Tokens {
					if tok < 0 || tok >= 256 {
						t.Fatalf("token %d after denoising", tok)
					}
				}
			}
		})
	}
}

// TestHostileRequests sends requests no caller should send. Each must be
// refused with the listed sentinel before anything large is allocated, and
// the Model must stay usable.
func TestHostileRequests(t *testing.T) {
	m := open(t, hAbsorb)
	long := strings.Repeat("x", 33)
	sample := func(req sdk.SampleRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := m.Sample(ctx, req); return err }
	}
	infill := func(tmpl string, req sdk.SampleRequest) func(context.Context) error {
		req.Template = tmpl
		return func(ctx context.Context) error { _, err := m.Sample(ctx, req); return err }
	}
	evaluate := func(docs []string, req sdk.EvaluateRequest) func(context.Context) error {
		req.Documents = docs
		return func(ctx context.Context) error { _, err := m.Evaluate(ctx, req); return err }
	}
	text := []string{"some text to evaluate"}
	tests := []struct {
		name string
		call func(context.Context) error
		want []error
		as   any
	}{
		{"steps -5", sample(sdk.SampleRequest{Steps: -5}), []error{sdk.ErrBadRequest}, nil},
		{"steps past MaxSteps", sample(sdk.SampleRequest{Steps: diffusion.MaxSteps + 1}), []error{sdk.ErrBadRequest}, nil},
		{"steps at the int limit", sample(sdk.SampleRequest{Steps: math.MaxInt}), []error{sdk.ErrBadRequest}, nil},
		{"eps NaN", sample(sdk.SampleRequest{EndTime: math.NaN()}), []error{sdk.ErrBadRequest}, nil},
		{"eps 1", sample(sdk.SampleRequest{EndTime: 1}), []error{sdk.ErrBadRequest}, nil},
		{"eps 1.5", sample(sdk.SampleRequest{EndTime: 1.5}), []error{sdk.ErrBadRequest}, nil},
		{"eps negative", sample(sdk.SampleRequest{EndTime: -1e-3}), []error{sdk.ErrBadRequest}, nil},
		{"eps +Inf", sample(sdk.SampleRequest{EndTime: math.Inf(1)}), []error{sdk.ErrBadRequest}, nil},
		{"eps -Inf", sample(sdk.SampleRequest{EndTime: math.Inf(-1)}), []error{sdk.ErrBadRequest}, nil},
		{"batch -1", sample(sdk.SampleRequest{Batch: -1}), []error{sdk.ErrBadRequest}, nil},
		{"batch at the negative int limit", sample(sdk.SampleRequest{Batch: math.MinInt}), []error{sdk.ErrBadRequest}, nil},
		{"batch at the int limit", sample(sdk.SampleRequest{Batch: math.MaxInt}), []error{sdk.ErrBadRequest}, nil},
		{"batch 2^24", sample(sdk.SampleRequest{Batch: 1 << 24}), []error{sdk.ErrBadRequest}, nil},
		{"batch over the score budget", sample(sdk.SampleRequest{Batch: (1<<31)/(32*257) + 1}), []error{sdk.ErrBadRequest}, nil},
		{"length -1", sample(sdk.SampleRequest{Length: -1}), []error{sdk.ErrBadRequest}, nil},
		{"length 2^20", sample(sdk.SampleRequest{Length: 1 << 20}), []error{sdk.ErrBadRequest}, nil},
		{"length at the int limit", sample(sdk.SampleRequest{Length: math.MaxInt}), []error{sdk.ErrBadRequest}, nil},
		{"length just past MaxLengthFactor", sample(sdk.SampleRequest{Length: 16*32 + 1}), []error{sdk.ErrBadRequest}, nil},
		{"unknown sampler", sample(sdk.SampleRequest{Sampler: "tweedie-99"}), []error{sdk.ErrBadRequest}, nil},
		{"prefix longer than the model", sample(sdk.SampleRequest{Prefix: long}), []error{sdk.ErrBadRequest}, nil},
		{"prefix overlapping the suffix", sample(sdk.SampleRequest{Prefix: long[:20], Suffix: long[:13]}), []error{sdk.ErrBadRequest}, nil},
		{"invalid UTF-8 prefix", sample(sdk.SampleRequest{Prefix: "ok \xc3\x28"}), []error{sdk.ErrBadRequest}, nil},
		{"invalid UTF-8 suffix", sample(sdk.SampleRequest{Suffix: "\xed\xa0\x80"}), []error{sdk.ErrBadRequest}, nil},
		{"invalid UTF-8 fixed text", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 3, Text: "\xff"}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed token -1", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 0, Tokens: []int64{-1}}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed token = mask", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 0, Tokens: []int64{256}}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed token at the int limit", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 0, Tokens: []int64{math.MaxInt}}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed span at a negative position", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: -1, Text: "a"}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed span at the int limit", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: math.MaxInt, Text: "a"}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed span longer than the model", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 0, Text: long}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed span overlapping the prefix", sample(sdk.SampleRequest{Prefix: "abc", Spans: []sdk.Span{{Pos: 2, Text: "z"}}}), []error{sdk.ErrBadRequest, diffusion.ErrInvalidConfig}, nil},
		{"fixed span overlapping the suffix", sample(sdk.SampleRequest{Suffix: "abc", Spans: []sdk.Span{{Pos: 28, Tokens: []int64{1, 2}}}}), []error{sdk.ErrBadRequest, diffusion.ErrInvalidConfig}, nil},
		{"fixed spans overlapping each other", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 5, Text: "abc"}, {Pos: 7, Text: "d"}}}), []error{sdk.ErrBadRequest, diffusion.ErrInvalidConfig}, nil},
		{"fixed span with neither text nor tokens", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 4}}}), []error{sdk.ErrBadRequest}, nil},
		{"fixed span with both text and tokens", sample(sdk.SampleRequest{Spans: []sdk.Span{{Pos: 4, Text: "a", Tokens: []int64{'b'}}}}), []error{sdk.ErrBadRequest}, nil},
		{"unclosed [MASK:", infill("ab [MASK:", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:0]", infill("[MASK:0]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:x]", infill("a[MASK:x]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:-3]", infill("[MASK:-3]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:+3]", infill("[MASK:+3]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK: 3]", infill("[MASK: 3]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:] empty count", infill("[MASK:]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:n] past the int limit", infill("[MASK:99999999999999999999999]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"[MASK:n] past MaxTemplateMasks", infill("[MASK:1048577]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"template longer than the model", infill("[MASK:1048576]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"template text longer than the model", infill(long+"[MASK]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"template with a huge length", infill("[MASK:1048576]", sdk.SampleRequest{Length: 1 << 20}), []error{sdk.ErrBadRequest}, nil},
		{"invalid UTF-8 template", infill("\xff[MASK]", sdk.SampleRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"template with a prefix", infill("a[MASK]", sdk.SampleRequest{Prefix: "b"}), []error{sdk.ErrBadRequest}, nil},
		{"template with steps -5", infill("a[MASK]", sdk.SampleRequest{Steps: -5}), []error{sdk.ErrBadRequest}, nil},
		{"template with eps NaN", infill("a[MASK]", sdk.SampleRequest{EndTime: math.NaN()}), []error{sdk.ErrBadRequest}, nil},
		{"template with batch -1", infill("a[MASK]", sdk.SampleRequest{Batch: -1}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate timesteps -1", evaluate(text, sdk.EvaluateRequest{Timesteps: -1}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate timesteps 2^40", evaluate(text, sdk.EvaluateRequest{Timesteps: 1 << 40}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate timesteps at the int limit", evaluate(text, sdk.EvaluateRequest{Timesteps: math.MaxInt}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate odd timesteps, antithetic", evaluate(text, sdk.EvaluateRequest{Timesteps: 3, Sampling: sdk.Antithetic}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate unknown sampling", evaluate(text, sdk.EvaluateRequest{Timesteps: 2, Sampling: "sobol"}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate eps NaN", evaluate(text, sdk.EvaluateRequest{MinTime: math.NaN()}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate eps 1", evaluate(text, sdk.EvaluateRequest{MinTime: 1}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate batch size -1", evaluate(text, sdk.EvaluateRequest{BatchSize: -1}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate batch size at the int limit", evaluate(text, sdk.EvaluateRequest{BatchSize: math.MaxInt}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate length -1", evaluate(text, sdk.EvaluateRequest{Length: -1}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate length 2^20", evaluate(text, sdk.EvaluateRequest{Length: 1 << 20}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate length at the int limit", evaluate(text, sdk.EvaluateRequest{Length: math.MaxInt}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate no documents", evaluate(nil, sdk.EvaluateRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate an empty document", evaluate([]string{""}, sdk.EvaluateRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate invalid UTF-8", evaluate([]string{"fine", "\xc0\xaf"}, sdk.EvaluateRequest{}), []error{sdk.ErrBadRequest}, nil},
		{"evaluate a text shorter than a dropped window", evaluate(text, sdk.EvaluateRequest{DropLast: true}), []error{sdk.ErrBadRequest}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			err := tt.call(context.Background())
			goruntime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("the request was accepted")
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Fatalf("error = %v\nwant one matching %v", err, want)
				}
			}
			if tt.as != nil && !errors.As(err, tt.as) {
				t.Fatalf("error = %v is not a %T", err, tt.as)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
				t.Errorf("refusing the request allocated %d bytes", grew)
			}
			t.Logf("%v", err)
		})
	}
	if err := infill("ab[MASK:3", sdk.SampleRequest{})(context.Background()); err == nil || !strings.Contains(err.Error(), "byte 2") {
		t.Errorf("unclosed [MASK: at byte 2 reported as %v", err)
	}
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 2, Prefix: "still", Seed: 1}); err != nil {
		t.Fatalf("Sample after the hostile requests: %v", err)
	}
}

// TestEdgeRequestsThatRun covers requests at the edge of what is allowed:
// they must run and mean what the documentation says.
func TestEdgeRequestsThatRun(t *testing.T) {
	var logs logLines
	m := open(t, hAbsorb, logs.option())
	ctx := context.Background()
	t.Run("steps 0 means DefaultSteps", func(t *testing.T) {
		res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 0, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if res.Steps != sdk.DefaultSteps || res.NetworkCalls != sdk.DefaultSteps+1 {
			t.Fatalf("steps %d, NFE %d; want %d and %d", res.Steps, res.NetworkCalls, sdk.DefaultSteps, sdk.DefaultSteps+1)
		}
	})
	t.Run("end time -0 means the default", func(t *testing.T) {
		res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 2, EndTime: math.Copysign(0, -1)})
		if err != nil {
			t.Fatal(err)
		}
		if res.EndTime != diffusion.DefaultEndTime {
			t.Fatalf("end time %g, want %g", res.EndTime, diffusion.DefaultEndTime)
		}
	})
	t.Run("template of only text", func(t *testing.T) {
		logs.reset()
		res, err := m.Sample(ctx, sdk.SampleRequest{Template: "only text", Steps: 2})
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Samples[0].Text; got != "only text" {
			t.Fatalf("sample %q, want the template's text", got)
		}
		if warnings := logs.get(); len(warnings) == 0 || !strings.Contains(warnings[0], "no [MASK]") {
			t.Fatalf("no warning about a template without masks: %q", warnings)
		}
	})
	t.Run("[MASKED] and a trailing [MASK are text", func(t *testing.T) {
		res, err := m.Sample(ctx, sdk.SampleRequest{Template: "[MASKED][MASK] [MASK", Steps: 2})
		if err != nil {
			t.Fatal(err)
		}
		got := res.Samples[0].Text
		if len(got) != len("[MASKED]x [MASK") || !strings.HasPrefix(got, "[MASKED]") || !strings.HasSuffix(got, " [MASK") {
			t.Fatalf("sample %q, want [MASKED], one token, then \" [MASK\"", got)
		}
	})
	t.Run("length MaxLengthFactor times the trained length", func(t *testing.T) {
		res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 1, Length: 16 * 32})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Samples[0].Tokens) != 16*32 {
			t.Fatalf("%d tokens", len(res.Samples[0].Tokens))
		}
	})
	t.Run("fixed span filling the whole sequence", func(t *testing.T) {
		text := strings.Repeat("ab", 16)
		res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 2, Spans: []sdk.Span{{Pos: 0, Text: text}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Samples[0].Text != text {
			t.Fatalf("sample %q, want %q", res.Samples[0].Text, text)
		}
	})
}

// TestVerifyBrokenGolden runs Verify where the network or the golden files
// are wrong: the error must match ErrVerify, and no golden input the network
// cannot take may reach ONNX Runtime.
func TestVerifyBrokenGolden(t *testing.T) {
	tests := []struct {
		name       string
		breaks     func(t *testing.T, dir string)
		want       error
		wantReport bool // a failing report is returned with the error
	}{
		{"golden.bin changed in place, hash unchanged", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.bin")
			raw := readFile(t, p)
			raw[40] ^= 1
			os.WriteFile(p, raw, 0o644)
		}, modeldir.ErrChecksum, false},
		{"a golden value changed, hash recorded", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.bin")
			raw := readFile(t, p)
			copy(raw, []byte{0, 0, 0x7a, 0x44}) // float32 1000 over the first log score
			os.WriteFile(p, raw, 0o644)
		}, sdk.ErrBadModel, true},
		{"network that is not the exported one", func(t *testing.T, dir string) {
			setModel(t, dir, scoreGraph{n: 257}.encode())
		}, sdk.ErrBadModel, true},
		{"golden.json missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "golden.json"))
		}, sdk.ErrBadModel, false},
		{"golden.bin truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.bin")
			os.WriteFile(p, readFile(t, p)[:1000], 0o644)
		}, sdk.ErrBadModel, false},
		{"golden.json not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "golden.json"), []byte("{\"cases\": ["), 0o644)
		}, sdk.ErrBadModel, false},
		{"golden input token outside the vocabulary", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.json")
			var doc map[string]any
			if err := json.Unmarshal(readFile(t, p), &doc); err != nil {
				t.Fatal(err)
			}
			doc["cases"].([]any)[0].(map[string]any)["indices"].([]any)[0] = 100000
			data, _ := json.Marshal(doc)
			os.WriteFile(p, data, 0o644)
		}, sdk.ErrBadModel, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureCopy(t, hAbsorb)
			tt.breaks(t, dir)
			if !errors.Is(tt.want, modeldir.ErrChecksum) {
				testlib.Rehash(t, dir)
			}
			m := open(t, dir)
			rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if tt.wantReport && (rep == nil || rep.OK || len(rep.Cases) == 0) {
				t.Fatalf("Verify report %+v; want the failing cases", rep)
			}
			t.Logf("%v", err)
		})
	}
}

// TestNonFiniteScores runs stand-in networks that return NaN or ±Inf once σ
// falls below a threshold, which the test puts between two steps of the time
// grid. The error must be a *diffusion.ScoreError, reachable with errors.As
// through the SDK's wrapping, naming the step at which the value appeared.
func TestNonFiniteScores(t *testing.T) {
	const steps = 10
	tests := []struct {
		name     string
		fixture  string
		n        int64
		fault    string
		sampler  string
		firstBad int // 1-based step; steps+1 is the denoiser
		infill   bool
	}{
		{"NaN at step 5, absorbing, analytic", hAbsorb, 257, "nan", sdk.Analytic, 5, false},
		{"+Inf at step 3, absorbing, euler", hAbsorb, 257, "inf", sdk.Euler, 3, false},
		{"-Inf LSE in the denoiser, absorbing", hAbsorb, 257, "-inf", sdk.Analytic, steps + 1, false},
		{"NaN at step 1, absorbing", hAbsorb, 257, "nan", sdk.Analytic, 1, false},
		{"NaN at step 7, uniform, analytic", hUniform, 256, "nan", sdk.Analytic, 7, false},
		{"+Inf at step 4, uniform, euler", hUniform, 256, "inf", sdk.Euler, 4, false},
		{"NaN at step 4 through Infill", hAbsorb, 257, "nan", sdk.Analytic, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureCopy(t, tt.fixture)
			man, err := manifest.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, noise, err := man.Diffusion()
			if err != nil {
				t.Fatal(err)
			}
			setModel(t, dir, scoreGraph{n: tt.n, fault: tt.fault,
				threshold: float32(badThreshold(noise, steps, diffusion.DefaultEndTime, tt.firstBad))}.encode())
			m := open(t, dir)
			var seen []int
			req := sdk.SampleRequest{Steps: steps, Sampler: tt.sampler, Batch: 2, Seed: 5}
			if tt.infill {
				req.Template = "a[MASK:3]b"
			}
			for st, e := range m.Stream(context.Background(), req) {
				if e != nil {
					err = e
					break
				}
				seen = append(seen, st.Index)
			}
			if !errors.Is(err, sdk.ErrBadModel) {
				t.Fatalf("error = %v, want one matching sdk.ErrBadModel", err)
			}
			var se *diffusion.ScoreError
			if !errors.Is(err, diffusion.ErrNonFinite) || !errors.As(err, &se) {
				t.Fatalf("error = %v, want a *diffusion.ScoreError matching diffusion.ErrNonFinite", err)
			}
			if se.Step != tt.firstBad {
				t.Fatalf("ScoreError at step %d, want %d: %v", se.Step, tt.firstBad, se)
			}
			if len(seen) != tt.firstBad-1 {
				t.Errorf("progress saw steps %v; the run should stop at step %d", seen, tt.firstBad)
			}
			switch tt.fault {
			case "nan":
				if !math.IsNaN(se.Value) {
					t.Errorf("value %v, want NaN", se.Value)
				}
			case "inf":
				if !math.IsInf(se.Value, 1) {
					t.Errorf("value %v, want +Inf", se.Value)
				}
			case "-inf":
				if !math.IsInf(se.Value, -1) {
					t.Errorf("value %v, want -Inf", se.Value)
				}
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("step %d", tt.firstBad)) {
				t.Errorf("message %q does not name the step", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestNonFiniteScoresInEvaluate evaluates the likelihood with a stand-in
// network that returns NaN for σ below a threshold: the error must be a
// *likelihood.ScoreError matching diffusion.ErrNonFinite, at a σ below it.
func TestNonFiniteScoresInEvaluate(t *testing.T) {
	const threshold = 1.0
	dir := fixtureCopy(t, hAbsorb)
	setModel(t, dir, scoreGraph{n: 257, fault: "nan", threshold: threshold}.encode())
	m := open(t, dir)
	_, err := m.Evaluate(context.Background(), sdk.EvaluateRequest{Documents: []string{"a few words of text"}, Timesteps: 16, Seed: 1})
	var se *likelihood.ScoreError
	if !errors.Is(err, diffusion.ErrNonFinite) || !errors.As(err, &se) {
		t.Fatalf("Evaluate error = %v, want a *likelihood.ScoreError matching diffusion.ErrNonFinite", err)
	}
	if !(se.Sigma < threshold) {
		t.Fatalf("NaN reported at sigma %g, but the network returns NaN only below %g", se.Sigma, threshold)
	}
	t.Logf("%v", err)
}

// badThreshold returns a σ between the σ of the step before firstBad and that
// of firstBad, on the grid t_k = 1 - k(1-eps)/steps (the denoiser runs at
// σ(eps)), so that a network failing below it fails first at firstBad.
func badThreshold(noise diffusion.Noise, steps int, eps float64, firstBad int) float64 {
	t := func(k int) float64 { return 1 - float64(k)*(1-eps)/float64(steps) }
	if firstBad == 1 {
		return 2 * noise.Total(1)
	}
	at := noise.Total(t(firstBad - 1))
	if firstBad == steps+1 {
		at = noise.Total(eps)
	}
	return (noise.Total(t(firstBad-2)) + at) / 2
}

// TestConcurrentMixedCalls shares one Model between 8 goroutines that
// sample, infill, verify and evaluate at the same time, and compares every
// result with the same call made alone.
func TestConcurrentMixedCalls(t *testing.T) {
	m := open(t, hAbsorb)
	ctx := context.Background()
	type job func() (any, error)
	samples := func(res *sdk.SampleResult, err error) (any, error) {
		if err != nil {
			return nil, err
		}
		var out [][]int64
		for _, s := range res.Samples {
			out = append(out, s.Tokens)
		}
		return out, nil
	}
	jobs := []job{
		func() (any, error) { return samples(m.Sample(ctx, sdk.SampleRequest{Steps: 12, Batch: 2, Seed: 1})) },
		func() (any, error) {
			return samples(m.Sample(ctx, sdk.SampleRequest{Steps: 9, Sampler: sdk.Euler, Prefix: "ab", Seed: 2}))
		},
		func() (any, error) {
			return samples(m.Sample(ctx, sdk.SampleRequest{Template: "x[MASK:4]y[MASK]z", Steps: 10, Batch: 3, Seed: 3}))
		},
		func() (any, error) {
			return samples(m.Sample(ctx, sdk.SampleRequest{Steps: 7, Length: 20, Suffix: "!", Seed: 4}))
		},
		func() (any, error) {
			rep, err := m.Verify(ctx, sdk.VerifyRequest{})
			if err != nil {
				return nil, err
			}
			return rep, nil
		},
		func() (any, error) {
			return m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{"the cat sat on the mat", "hello"}, Timesteps: 6, Seed: 6})
		},
		func() (any, error) {
			return samples(m.Sample(ctx, sdk.SampleRequest{Template: "[MASK:2] and [MASK:2]", Steps: 8, Seed: 7, NoDenoise: true}))
		},
		func() (any, error) {
			return m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{strings.Repeat("abc ", 20)}, Timesteps: 4, Seed: 8, Length: 16})
		},
	}
	want := make([]any, len(jobs))
	for i, j := range jobs {
		var err error
		if want[i], err = j(); err != nil {
			t.Fatalf("job %d alone: %v", i, err)
		}
	}
	const rounds = 3
	got := make([][]any, rounds)
	errs := make([][]error, rounds)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for r := range rounds {
		got[r] = make([]any, len(jobs))
		errs[r] = make([]error, len(jobs))
		for i, j := range jobs {
			wg.Go(func() {
				<-start
				got[r][i], errs[r][i] = j()
			})
		}
	}
	close(start)
	wg.Wait()
	for r := range rounds {
		for i := range jobs {
			if errs[r][i] != nil {
				t.Fatalf("round %d, job %d: %v", r, i, errs[r][i])
			}
			if !reflect.DeepEqual(got[r][i], want[i]) {
				t.Fatalf("round %d, job %d: concurrent result differs from the sequential one\n got %v\nwant %v", r, i, got[r][i], want[i])
			}
		}
	}
}

// TestDeadlineShorterThanARun gives Sample a deadline that ends in the middle
// of a run: it must stop with context.DeadlineExceeded within one network
// evaluation, the Model must stay usable, and no scorer, environment
// reference or goroutine may outlive Close.
func TestDeadlineShorterThanARun(t *testing.T) {
	goroutines := goruntime.NumGoroutine()
	refs := onnxrt.References()
	m, err := sdk.Open(hAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: 4}); err != nil { // warm up
		t.Fatal(err)
	}
	const steps = 100_000 // several seconds even on a fast machine
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := m.Sample(expired, sdk.SampleRequest{Steps: steps}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sample with an expired deadline: %v, want context.DeadlineExceeded", err)
	}
	for i := range 5 {
		deadline := time.Now().Add(time.Duration(20+10*i) * time.Millisecond)
		dctx, cancel := context.WithDeadline(ctx, deadline)
		var done, late int
		var err error
		for _, e := range m.Stream(dctx, sdk.SampleRequest{Steps: steps, Batch: 2, Seed: uint64(i)}) {
			if e != nil {
				err = e
				break
			}
			done++
			if dctx.Err() != nil { // the deadline has passed (as the context saw it)
				late++
			}
		}
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run %d: Sample error = %v, want context.DeadlineExceeded", i, err)
		}
		if done >= steps {
			t.Fatalf("run %d: %d of %d steps done; the deadline should end the run in the middle", i, done, steps)
		}
		if late > 1 {
			t.Fatalf("run %d: %d steps finished after the deadline; want at most the one in flight", i, late)
		}
		if i == 0 {
			t.Logf("deadline 20 ms: %d steps done, %d after the deadline", done, late)
		}
	}
	// Cancellation through Infill, Verify and Evaluate as well.
	cctx, cancelAll := context.WithCancel(ctx)
	cancelAll()
	calls := map[string]func() error{
		"Infill": func() error { _, err := m.Sample(cctx, sdk.SampleRequest{Template: "a[MASK:3]"}); return err },
		"Verify": func() error { _, err := m.Verify(cctx, sdk.VerifyRequest{}); return err },
		"Evaluate": func() error {
			_, err := m.Evaluate(cctx, sdk.EvaluateRequest{Documents: []string{"some text"}})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", name, err)
		}
	}
	res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 6, Seed: 9, Prefix: "ok"})
	if err != nil {
		t.Fatalf("Sample after the deadlines: %v", err)
	}
	if !strings.HasPrefix(res.Samples[0].Text, "ok") {
		t.Fatalf("sample after the deadlines lost its prefix: %q", res.Samples[0].Text)
	}
	// The session holds one reference, and the pool at most one Scorer per
	// call that was in flight at once: here one.
	if held := onnxrt.References() - refs; held > 2 {
		t.Errorf("%d ONNX Runtime references held by an idle Model after cancelled runs; want ≤ 2 (session and one pooled scorer)", held)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if after := onnxrt.References(); after != refs {
		t.Errorf("ONNX Runtime references %d after Close, %d before Open", after, refs)
	}
	waitGoroutines(t, goroutines)
}

// waitGoroutines waits up to a second for the number of goroutines to fall
// back to n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	var now int
	for range 100 {
		if now = goruntime.NumGoroutine(); now <= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after Close, %d before Open", now, n)
}

// TestLongRunMemory samples many times in a row and checks that resident
// memory stays flat after a warm-up. It runs 50 samples by default and 500
// with SEDD_LONG=1.
func TestLongRunMemory(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("resident memory is read from /proc/self/status (Linux only)")
	}
	n, allowed := 50, int64(8<<20)
	if os.Getenv("SEDD_LONG") == "1" {
		n = 500
	} else if testing.Short() {
		t.Skip("long run skipped in -short mode")
	}
	m := open(t, hAbsorb)
	ctx := context.Background()
	run := func(i int) {
		var err error
		switch i % 3 {
		case 0:
			_, err = m.Sample(ctx, sdk.SampleRequest{Steps: 16, Batch: 2, Seed: uint64(i)})
		case 1:
			_, err = m.Sample(ctx, sdk.SampleRequest{Template: "The [MASK:5] sat on [MASK:3].", Steps: 16, Seed: uint64(i)})
		default:
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			_, err = m.Sample(dctx, sdk.SampleRequest{Steps: 16, Length: 24, Prefix: "x", Seed: uint64(i)})
			cancel()
		}
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
	}
	const warmup = 15
	for i := range warmup {
		run(i)
	}
	base := residentBytes(t)
	start := time.Now()
	peak := base
	for i := range n {
		run(warmup + i)
		if i%10 == 9 {
			peak = max(peak, residentBytes(t))
		}
	}
	end := residentBytes(t)
	grew := end - base
	t.Logf("%d samples in %v: resident memory %.1f MiB after warm-up, %.1f MiB at the end (growth %+.2f MiB, peak %.1f MiB; allowed growth %.0f MiB)",
		n, time.Since(start).Round(time.Millisecond), mib(base), mib(end), mib(grew), mib(peak), mib(allowed))
	if grew > allowed {
		t.Errorf("resident memory grew by %.2f MiB over %d samples, more than the %.0f MiB allowed", mib(grew), n, mib(allowed))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// residentBytes returns VmRSS after returning freed Go memory to the system.
func residentBytes(t *testing.T) int64 {
	t.Helper()
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestCloseWhileCallsRun closes a Model while calls are in flight: Close
// returns at once, the calls in flight stop with ErrClosed (or finish, if
// they were about to), calls that start afterwards fail with ErrClosed, and
// once the last call has returned every ONNX Runtime reference is given
// back. Closing again is harmless.
func TestCloseWhileCallsRun(t *testing.T) {
	refs := onnxrt.References()
	goroutines := goruntime.NumGoroutine()
	m, err := sdk.Open(hAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const workers = 6
	var started sync.WaitGroup
	started.Add(workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			req := sdk.SampleRequest{Steps: 100_000, Seed: uint64(i)}
			if i%3 == 1 {
				req.Template = "[MASK:4]-[MASK:4]"
			}
			sctx := ctx
			if i%3 == 2 {
				var cancel context.CancelFunc
				sctx, cancel = context.WithTimeout(ctx, time.Minute)
				defer cancel()
			}
			first := true
			for _, err := range m.Stream(sctx, req) {
				if err != nil {
					errs[i] = err
					break
				}
				if first {
					first = false
					started.Done()
				}
			}
		})
	}
	started.Wait()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Calls that start after Close fail at once.
	after := map[string]func() error{
		"Sample":   func() error { _, err := m.Sample(ctx, sdk.SampleRequest{}); return err },
		"Infill":   func() error { _, err := m.Sample(ctx, sdk.SampleRequest{Template: "a[MASK]"}); return err },
		"Verify":   func() error { _, err := m.Verify(ctx, sdk.VerifyRequest{}); return err },
		"Evaluate": func() error { _, err := m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{"text"}}); return err },
	}
	for name, call := range after {
		if err := call(); !errors.Is(err, sdk.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, sdk.ErrClosed) {
			t.Errorf("call %d in flight during Close: %v, want ErrClosed", i, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if info := m.Info(); info.Tokens != 256 {
		t.Errorf("Info after Close: %+v", info)
	}
	if got := onnxrt.References(); got != refs {
		t.Errorf("ONNX Runtime references %d after the last call returned, %d before Open", got, refs)
	}
	waitGoroutines(t, goroutines)
}

// TestReentrantCalls makes calls from inside a Stream's loop body: another
// call on the same Model runs, Close from there ends the stream with
// ErrClosed instead of deadlocking, and a Progress callback of Evaluate that
// calls Close while another goroutine closes too never blocks.
func TestReentrantCalls(t *testing.T) {
	refs := onnxrt.References()
	m, err := sdk.Open(hAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nested := 0
	for st, err := range m.Stream(ctx, sdk.SampleRequest{Steps: 4, Seed: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if st.Index == 2 {
			res, err := m.Sample(ctx, sdk.SampleRequest{Steps: 2, Prefix: "in"})
			if err != nil || res.Samples[0].Text[:2] != "in" {
				t.Fatalf("a Sample from a stream's loop body: %v", err)
			}
			if _, err := m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{"nested"}, Timesteps: 2}); err != nil {
				t.Fatalf("an Evaluate from a stream's loop body: %v", err)
			}
			nested++
		}
	}
	if nested != 1 {
		t.Fatal("the loop body never ran its nested calls")
	}
	done := make(chan error, 1)
	go func() {
		var last error
		for st, err := range m.Stream(ctx, sdk.SampleRequest{Steps: 50}) {
			if err != nil {
				last = err
				break
			}
			if st.Index == 3 {
				go m.Close() // another goroutine races us to it
				if err := m.Close(); err != nil {
					last = fmt.Errorf("Close from the loop body: %w", err)
					break
				}
				if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: 2}); !errors.Is(err, sdk.ErrClosed) {
					last = fmt.Errorf("Sample after Close, from the loop body: %v", err)
					break
				}
			}
		}
		done <- last
	}()
	select {
	case err := <-done:
		if !errors.Is(err, sdk.ErrClosed) {
			t.Fatalf("the stream closed from its own loop body ended with %v, want ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close from a stream's loop body deadlocked")
	}
	waitRefs(t, refs)

	m, err = sdk.Open(hAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{strings.Repeat("abc ", 30)}, Timesteps: 8,
		Progress: func(done, total int) { m.Close() }})
	if !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("Evaluate closed from its Progress callback: %v, want ErrClosed", err)
	}
	waitRefs(t, refs)
}

// TestCallbackPanics panics in callbacks: a panic in Evaluate's Progress
// comes back as a *sdk.CallbackPanic holding the value; a panic in a
// Stream's loop body goes up to the loop's caller, as in any for loop. Either
// way nothing is left behind: the Model stays usable, no goroutine, no
// ONNX Runtime reference and no pooled tensors beyond the first grow with
// the number of panics.
func TestCallbackPanics(t *testing.T) {
	m := open(t, hAbsorb)
	ctx := context.Background()
	warm := func() {
		if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: 2}); err != nil {
			t.Fatal(err)
		}
	}
	warm()
	goroutines, refs := goruntime.NumGoroutine(), onnxrt.References()
	for i := range 50 {
		_, err := m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{"some text"}, Timesteps: 4,
			Progress: func(done, total int) { panic(fmt.Sprintf("boom %d", i)) }})
		var cp *sdk.CallbackPanic
		if !errors.As(err, &cp) || cp.Value != fmt.Sprintf("boom %d", i) {
			t.Fatalf("Evaluate with a panicking callback: %v", err)
		}
		func() {
			defer func() {
				if r := recover(); r != fmt.Sprintf("loop %d", i) {
					t.Fatalf("recovered %v", r)
				}
			}()
			for range m.Stream(ctx, sdk.SampleRequest{Steps: 8}) {
				panic(fmt.Sprintf("loop %d", i))
			}
		}()
	}
	warm()
	if got := onnxrt.References(); got != refs {
		t.Errorf("ONNX Runtime references %d after 100 panics, %d before", got, refs)
	}
	waitGoroutines(t, goroutines)
}

// waitRefs waits up to a second for the ONNX Runtime references to fall back
// to n.
func waitRefs(t *testing.T, n int) {
	t.Helper()
	var now int
	for range 100 {
		if now = onnxrt.References(); now == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d ONNX Runtime references, want %d", now, n)
}

// Minimal ONNX writer: just enough of the protobuf encoding to write score
// graphs with chosen names, types and arithmetic.

const (
	onnxFloat   = 1
	onnxInt32   = 6
	onnxInt64   = 7
	onnxFloat16 = 10
	onnxDouble  = 11
)

func pbVarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func pbKey(num, wire int) []byte { return pbVarint(uint64(num)<<3 | uint64(wire)) }

func pbInt(num int, v int64) []byte { return append(pbKey(num, 0), pbVarint(uint64(v))...) }

func pbBytes(num int, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	return append(append(pbKey(num, 2), pbVarint(uint64(len(body)))...), body...)
}

func pbString(num int, s string) []byte { return pbBytes(num, []byte(s)) }

// onnxValueInfo encodes a ValueInfoProto; a negative dim is a named dynamic
// axis.
func onnxValueInfo(name string, elem int32, dims ...int64) []byte {
	var ds [][]byte
	for i, d := range dims {
		if d < 0 {
			ds = append(ds, pbBytes(1, pbString(2, []string{"batch", "length", "states"}[i])))
		} else {
			ds = append(ds, pbBytes(1, pbInt(1, d)))
		}
	}
	tensor := pbBytes(1, pbInt(1, int64(elem)), pbBytes(2, ds...))
	return append(pbString(1, name), pbBytes(2, tensor)...)
}

// onnxNode encodes a NodeProto with one output.
func onnxNode(op, output string, inputs []string, attrs ...[]byte) []byte {
	var parts [][]byte
	for _, in := range inputs {
		parts = append(parts, pbString(1, in))
	}
	parts = append(parts, pbString(2, output), pbString(3, output+"_node"), pbString(4, op))
	for _, a := range attrs {
		parts = append(parts, pbBytes(5, a))
	}
	return pbBytes(1, parts...)
}

// onnxIntAttr encodes an integer AttributeProto.
func onnxIntAttr(name string, v int64) []byte {
	return bytes.Join([][]byte{pbString(1, name), pbInt(3, v), pbInt(20, 2)}, nil)
}

// onnxTensor encodes an initializer (TensorProto with raw data).
func onnxTensor(name string, elem int32, dims []int64, raw []byte) []byte {
	var parts [][]byte
	for _, d := range dims {
		parts = append(parts, pbInt(1, d))
	}
	parts = append(parts, pbInt(2, int64(elem)), pbString(8, name), pbBytes(9, raw))
	return pbBytes(5, parts...)
}

func onnxFloats(name string, vals ...float32) []byte {
	raw := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	return onnxTensor(name, onnxFloat, []int64{int64(len(vals))}, raw)
}

func onnxInt64s(name string, vals ...int64) []byte {
	raw := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
	}
	return onnxTensor(name, onnxInt64, []int64{int64(len(vals))}, raw)
}

// scoreGraph describes a stand-in score network that ONNX Runtime can run.
// With the zero values of its fields except n it follows the ONNX contract and
// computes log_score_lse = f(σ) at every position, where f is chosen by
// fault:
//
//	"" or "finite": 1
//	"nan":  sqrt(σ - threshold), NaN once σ < threshold
//	"inf":  1 / relu(σ - threshold), +Inf once σ ≤ threshold
//	"-inf": log(relu(σ - threshold)), -Inf once σ ≤ threshold
//
// log_score is 0 while σ > threshold and equal to the log-sum-exp once σ
// falls to it, so that a sampler reading either output meets the bad value.
// The other fields break the contract in one way each.
type scoreGraph struct {
	n           int64 // states in the declared output shape; < 0 writes a dynamic axis
	outN        int64 // states actually computed; 0 means n
	fault       string
	threshold   float32
	indicesName string // name of the token input; "" means indices
	// Element types of indices, sigma and log_score; 0 means the contract's.
	indicesType, sigmaType, scoreType int32
	noLSE                             bool // leave out the log_score_lse output
	emptyLayerNormInput               bool // add a LayerNormalization with an empty input
	unknownOp                         bool // add a node of an operator no runtime has
	// lyingShape reshapes log_score to [1, 1, n] through a shape computed
	// from σ, which ONNX Runtime cannot know before it runs: a forward pass of
	// more than one token fails inside ONNX Runtime, while running it.
	lyingShape bool
	// logScore, when not 0, is the log score of every state (with fault ""):
	// -1000 puts the bound past 709 nats per token, a perplexity of +Inf.
	logScore float32
}

func (g scoreGraph) encode() []byte {
	if g.indicesName == "" {
		g.indicesName = "indices"
	}
	if g.indicesType == 0 {
		g.indicesType = onnxInt64
	}
	if g.sigmaType == 0 {
		g.sigmaType = onnxFloat
	}
	if g.scoreType == 0 {
		g.scoreType = onnxFloat
	}
	outN := g.outN
	if outN == 0 {
		outN = g.n
	}
	fields := [][]byte{
		onnxFloats("zero", 0),
		onnxFloats("one", 1),
		onnxFloats("threshold", g.threshold),
		onnxInt64s("axis1", 1),
		onnxInt64s("axis2", 2),
		onnxInt64s("expand", 1, 1, outN),
		// zeros [B, L] from the indices, σ broadcast to [B, L].
		onnxNode("Cast", "xf", []string{g.indicesName}, onnxIntAttr("to", onnxFloat)),
		onnxNode("Mul", "zeros", []string{"xf", "zero"}),
		onnxNode("Unsqueeze", "sigma_col", []string{"sigma", "axis1"}),
		onnxNode("Add", "sig", []string{"zeros", "sigma_col"}),
		onnxNode("Sub", "diff", []string{"sig", "threshold"}),
	}
	var bad string
	switch g.fault {
	case "", "finite":
		bad = "zeros"
		fields = append(fields, onnxNode("Add", "lse", []string{"zeros", "one"}))
		if g.logScore != 0 {
			fields = append(fields, onnxFloats("offset", g.logScore), onnxNode("Add", "shifted", []string{"zeros", "offset"}))
			bad = "shifted"
		}
	case "nan":
		bad = "lse"
		fields = append(fields, onnxNode("Sqrt", "lse", []string{"diff"}))
	case "inf":
		bad = "lse"
		fields = append(fields, onnxNode("Relu", "pos", []string{"diff"}),
			onnxNode("Reciprocal", "lse", []string{"pos"}))
	case "-inf":
		bad = "lse"
		fields = append(fields, onnxNode("Relu", "pos", []string{"diff"}),
			onnxNode("Log", "lse", []string{"pos"}))
	default:
		panic("unknown fault " + g.fault)
	}
	if bad == "lse" {
		// log_score = where(σ > threshold, 0, lse): Greater → Where.
		fields = append(fields,
			onnxNode("Greater", "ok", []string{"diff", "zero"}),
			onnxNode("Where", "ls2", []string{"ok", "zeros", "lse"}))
		bad = "ls2"
	}
	fields = append(fields,
		onnxNode("Unsqueeze", "ls3", []string{bad, "axis2"}),
		onnxNode("Identity", "log_score_lse", []string{"lse"}),
	)
	if g.lyingShape {
		fields = append(fields, onnxFloats("fixed", 1, 1, float32(outN)),
			onnxNode("ReduceMax", "smax", []string{"sigma"}),
			onnxNode("Mul", "szero", []string{"smax", "zero"}),
			onnxNode("Add", "shapef", []string{"fixed", "szero"}),
			onnxNode("Cast", "shape", []string{"shapef"}, onnxIntAttr("to", onnxInt64)),
			onnxNode("Expand", "ls4", []string{"ls3", "expand"}),
			onnxNode("Reshape", "log_score", []string{"ls4", "shape"}))
	} else {
		fields = append(fields, onnxNode("Expand", "log_score", []string{"ls3", "expand"}))
	}
	if g.emptyLayerNormInput {
		fields = append(fields,
			onnxFloats("ln_scale", 1),
			onnxNode("LayerNormalization", "ln", []string{"ls3", "ln_scale", ""}))
	}
	if g.unknownOp {
		fields = append(fields, onnxNode("NoSuchOperator", "nothing", []string{"zeros"}))
	}
	fields = append(fields,
		pbBytes(11, onnxValueInfo(g.indicesName, g.indicesType, -1, -1)),
		pbBytes(11, onnxValueInfo("sigma", g.sigmaType, -1)),
		pbBytes(12, onnxValueInfo("log_score", g.scoreType, -1, -1, g.n)))
	if !g.noLSE {
		fields = append(fields, pbBytes(12, onnxValueInfo("log_score_lse", onnxFloat, -1, -1)))
	}
	fields = append(fields, pbString(2, "stand-in"))
	return bytes.Join([][]byte{
		pbInt(1, 8),                               // ir_version
		pbString(2, "sedd-tests"),                 // producer_name
		pbBytes(7, fields...),                     // graph
		pbBytes(8, pbString(1, ""), pbInt(2, 17)), // opset_import
	}, nil)
}

// logLines collects what a Model logs, one line per record: the message and
// its attributes.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) option() sdk.Option { return sdk.WithLogger(slog.New(lineHandler{l})) }

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *logLines) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = nil
}

type lineHandler struct{ l *logLines }

func (h lineHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h lineHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h lineHandler) WithGroup(string) slog.Handler            { return h }
func (h lineHandler) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, line)
	h.l.mu.Unlock()
	return nil
}

// TestMemoryLimit refuses requests whose memory estimate passes the Model's
// limit, before anything is allocated for them: the two requests that took
// the shipped model past 8 GB before the limit existed, an Evaluate batch,
// and with a small limit set by WithMemoryLimit an ordinary batch.
func TestMemoryLimit(t *testing.T) {
	m := open(t, shippedSEDD)
	small := open(t, shippedSEDD, sdk.WithMemoryLimit(64<<20))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"batch 4095", func() error { _, err := m.Sample(ctx, sdk.SampleRequest{Batch: 4095, Steps: 1}); return err }},
		{"length 2048, batch 64", func() error {
			_, err := m.Sample(ctx, sdk.SampleRequest{Length: 2048, Batch: 64, Steps: 1})
			return err
		}},
		{"evaluate batch size 100000", func() error {
			_, err := m.Evaluate(ctx, sdk.EvaluateRequest{Documents: []string{"text"}, BatchSize: 100_000})
			return err
		}},
		{"batch 16 under a 64 MiB limit", func() error { _, err := small.Sample(ctx, sdk.SampleRequest{Batch: 16, Steps: 1}); return err }},
		{"stream of batch 4095", func() error {
			for _, err := range m.Stream(ctx, sdk.SampleRequest{Batch: 4095, Steps: 1}) {
				return err
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			err := tc.call()
			goruntime.ReadMemStats(&after)
			var me *sdk.MemoryError
			if !errors.Is(err, sdk.ErrBadRequest) || !errors.As(err, &me) || me.Need <= me.Limit {
				t.Fatalf("error %v, want a *sdk.MemoryError matching ErrBadRequest", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("refusing it allocated %d bytes", grew)
			}
			t.Logf("%v", err)
		})
	}
	if _, err := small.Sample(ctx, sdk.SampleRequest{Batch: 1, Steps: 2}); err != nil {
		t.Fatalf("batch 1 under a 64 MiB limit: %v", err)
	}
	if _, err := sdk.Open(shippedSEDD, sdk.WithMemoryLimit(0)); !errors.Is(err, sdk.ErrBadRequest) {
		t.Fatalf("WithMemoryLimit(0): %v, want ErrBadRequest", err)
	}
}
