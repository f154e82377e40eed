package sdk_test

import (
	"context"
	"errors"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk"
)

// The tests of this file run the SDK on an accelerator. They are skipped
// unless SEDD_TEST_DEVICE names the device ("cuda:0"), and need a CUDA build
// of ONNX Runtime in ONNXRUNTIME_SHARED_LIBRARY_PATH with its CUDA and cuDNN
// libraries on the loader path (scripts/gpu/gpu-check.sh prepares and runs them
// on a GPU machine). SEDD_TEST_CPU_FALLBACK=1 lets the device fall back to
// the CPU, so that the same tests run on a machine without a GPU, where they
// check themselves rather than CUDA.
const (
	envTestDevice   = "SEDD_TEST_DEVICE"
	envTestFallback = "SEDD_TEST_CPU_FALLBACK"
	shippedModel    = "../models/brown-sedd-small"
)

// device returns the device under test and the options that open a model on
// it, or skips the test.
func device(t *testing.T) (string, []sdk.Option) {
	t.Helper()
	d := os.Getenv(envTestDevice)
	if d == "" {
		t.Skipf("set %s=cuda:0 (with a CUDA build of ONNX Runtime) to run the device tests", envTestDevice)
	}
	opts := []sdk.Option{sdk.WithDevice(d), sdk.WithThreads(2)}
	if os.Getenv(envTestFallback) == "1" {
		opts = append(opts, sdk.WithCPUFallback())
	}
	return d, opts
}

// openOn opens dir on the device under test and checks that it runs there
// (or, with the fallback allowed, that it fell back to the CPU and says so).
func openOn(t *testing.T, dir string) *sdk.Model {
	t.Helper()
	d, opts := device(t)
	m, err := sdk.Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open(%s) on %s: %v", dir, d, err)
	}
	t.Cleanup(func() { m.Close() })
	info := m.Info()
	switch {
	case info.Provider == d:
	case os.Getenv(envTestFallback) == "1" && info.FellBackToCPU && info.Provider == "cpu":
		t.Logf("%s fell back to the CPU (allowed by %s=1)", d, envTestFallback)
	default:
		t.Fatalf("Open(%s) on %s runs on %q (fell back: %v)", dir, d, info.Provider, info.FellBackToCPU)
	}
	return m
}

// TestCUDAVerify checks every graph of the fixtures and the shipped model
// against their golden PyTorch outputs on the device, with the same
// tolerance as on the CPU (the one sedd.json records).
func TestCUDAVerify(t *testing.T) {
	for _, dir := range []string{tinyAbsorb, tinyUniform, shippedModel} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := openOn(t, dir)
			rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !rep.OK || len(rep.Cases) == 0 {
				t.Fatalf("Verify on the device failed: %+v", rep)
			}
			t.Logf("%s: max relative error %.3g over %d cases", dir, rep.MaxRel, len(rep.Cases))
		})
	}
}

// TestCUDASampleAgainstCPU samples with one seed on the device (twice) and on
// the CPU. Two device runs must give the same tokens; the CPU may differ in
// a few positions, because the network's float32 sums run in another order
// and a categorical draw whose uniform variate falls between the two
// runs' cumulative probabilities picks another token (and the steps after it
// condition on that token). The count is logged, not bounded.
func TestCUDASampleAgainstCPU(t *testing.T) {
	ctx := context.Background()
	req := sdk.SampleRequest{Steps: 32, Batch: 2, Seed: 7, Prefix: "The jury"}
	m := openOn(t, shippedModel)
	a, err := m.Sample(ctx, req)
	if err != nil {
		t.Fatalf("Sample on the device: %v", err)
	}
	b, err := m.Sample(ctx, req)
	if err != nil {
		t.Fatalf("second Sample on the device: %v", err)
	}
	cpu := open(t, shippedModel, sdk.WithThreads(2))
	c, err := cpu.Sample(ctx, req)
	if err != nil {
		t.Fatalf("Sample on the CPU: %v", err)
	}
	info := m.Info()
	differ, total := 0, 0
	for i := range a.Samples {
		at, bt, ct := a.Samples[i].Tokens, b.Samples[i].Tokens, c.Samples[i].Tokens
		if len(at) != info.Length || len(bt) != len(at) || len(ct) != len(at) {
			t.Fatalf("sample %d: %d, %d and %d tokens, want %d", i, len(at), len(bt), len(ct), info.Length)
		}
		for j := range at {
			if at[j] < 0 || at[j] >= int64(info.Tokens) {
				t.Fatalf("sample %d token %d = %d: outside the vocabulary (a mask left, or garbage)", i, j, at[j])
			}
			if at[j] != bt[j] {
				t.Fatalf("sample %d token %d: %d then %d with the same seed on the device: not deterministic", i, j, at[j], bt[j])
			}
			if at[j] != ct[j] {
				differ++
			}
			total++
		}
		if !strings.HasPrefix(a.Samples[i].Text, "The jury") {
			t.Errorf("sample %d lost its prefix: %q", i, a.Samples[i].Text)
		}
	}
	t.Logf("seed %d, %d steps: %d of %d tokens differ between %s and the CPU; device network time %v of %v",
		req.Seed, req.Steps, differ, total, info.Provider, a.Network, a.Elapsed)
}

// TestCUDAEvaluateAgainstCPU bounds the same text on the device and on the
// CPU: the same draws through a network that agrees to float32 precision must
// give bounds within 0.1 % of each other.
func TestCUDAEvaluateAgainstCPU(t *testing.T) {
	ctx := context.Background()
	req := sdk.EvaluateRequest{Documents: []string{strings.Repeat("The jury said it did not find any evidence. ", 8)},
		Timesteps: 16, Seed: 3}
	dev, err := openOn(t, shippedModel).Evaluate(ctx, req)
	if err != nil {
		t.Fatalf("Evaluate on the device: %v", err)
	}
	cpu, err := open(t, shippedModel, sdk.WithThreads(2)).Evaluate(ctx, req)
	if err != nil {
		t.Fatalf("Evaluate on the CPU: %v", err)
	}
	if d := math.Abs(dev.NatsPerToken - cpu.NatsPerToken); d > 1e-3*math.Max(1, cpu.NatsPerToken) {
		t.Errorf("bound %.6f nats/token on the device, %.6f on the CPU (stderr %.4f)", dev.NatsPerToken, cpu.NatsPerToken, cpu.StdErr)
	}
}

// TestCUDACancel cancels a long run on the device between two steps: it must
// stop within one network evaluation, and the model must sample again.
func TestCUDACancel(t *testing.T) {
	m := openOn(t, shippedModel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	calls := 0
	for st, e := range m.Stream(ctx, sdk.SampleRequest{Steps: 100000, Batch: 8}) {
		if e != nil {
			err = e
			break
		}
		calls++
		if st.Index == 3 {
			cancel()
		}
	}
	if !errors.Is(err, context.Canceled) || calls > 4 {
		t.Fatalf("after cancel at step 3: %d steps, error %v; want context.Canceled at once", calls, err)
	}
	if _, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 2, Batch: 8}); err != nil {
		t.Fatalf("Sample after cancel: %v", err)
	}
}

// TestCUDASignals checks that Go's signal handling survives the CUDA
// provider (onnxruntime_go issue 140: with batches over 1, Ctrl-C crashed
// the process with "non-Go code set up signal handler without SA_ONSTACK
// flag"). After a batch of 8 has run on the device, a SIGINT the process
// sends itself must arrive on a signal.Notify channel, during a forward pass
// and between passes, and the process must live on.
func TestCUDASignals(t *testing.T) {
	m := openOn(t, shippedModel)
	ctx := context.Background()
	if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: 4, Batch: 8}); err != nil {
		t.Fatalf("Sample: %v", err)
	}
	got := make(chan os.Signal, 4)
	signal.Notify(got, os.Interrupt)
	defer signal.Stop(got)
	expect := func(when string) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			t.Fatalf("kill: %v", err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("SIGINT %s never reached signal.Notify: the CUDA provider replaced Go's handler", when)
		}
	}
	expect("between forward passes")
	done := make(chan error, 1)
	go func() {
		_, err := m.Sample(ctx, sdk.SampleRequest{Steps: 8, Batch: 8})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	expect("during sampling")
	if err := <-done; err != nil {
		t.Fatalf("Sample during the signals: %v", err)
	}
	t.Logf("signals whose Go handler a CUDA library replaced and the SDK gave back: %v", m.Info().RestoredSignals)
}
