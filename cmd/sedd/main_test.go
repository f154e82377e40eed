package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/internal/cmdtest"
	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
)

const (
	exitOK          = cmdline.ExitOK
	exitRuntime     = cmdline.ExitRuntime
	exitUsage       = cmdline.ExitUsage
	exitInterrupted = cmdline.ExitInterrupted
	envModel        = cmdline.EnvModel
)

// The tests build the sedd binary once and drive it as a subprocess, from a
// directory outside the repository, the way a user would.
var command *cmdtest.Command

// Committed fixture models (see sdk/testdata).
var (
	tinyAbsorb  = cmdtest.Abs("../../sdk/testdata/tiny-absorb")
	tinyUniform = cmdtest.Abs("../../sdk/testdata/tiny-uniform")
)

func TestMain(m *testing.M) { cmdtest.Main(m, "sedd", &command) }

// needORT skips tests that run a model when no ONNX Runtime library exists.
func needORT(t *testing.T) { t.Helper(); command.NeedORT(t) }

// sedd runs the command with args from a fresh directory outside the
// repository, with a private cache directory and no SEDD_MODEL.
func sedd(t *testing.T, args ...string) cmdtest.Result {
	t.Helper()
	return command.Run(t, args...)
}

func childEnv(t *testing.T) []string { return command.Env(t) }

// sampleLine is one --json line.
type sampleLine struct {
	Index         int      `json:"index"`
	Text          string   `json:"text"`
	Tokens        []int    `json:"tokens"`
	Steps         int      `json:"steps"`
	NFE           int      `json:"network_calls"`
	Rows          int      `json:"network_rows"`
	Predictor     string   `json:"sampler"`
	Denoise       bool     `json:"denoise"`
	Eps           float64  `json:"end_time"`
	Seed          uint64   `json:"seed"`
	Length        int      `json:"length"`
	ElapsedMS     *float64 `json:"elapsed_ms"`
	NetworkMS     *float64 `json:"network_ms"`
	Temperature   float64  `json:"temperature"`
	TopK          int      `json:"top_k"`
	TopP          float64  `json:"top_p"`
	BlockOverlap  int      `json:"block_overlap"`
	Threshold     float64  `json:"threshold"`
	EntropyBudget float64  `json:"entropy_budget"`
}

func parseLines(t *testing.T, out string) []sampleLine {
	t.Helper()
	var lines []sampleLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l sampleLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

func TestSample(t *testing.T) {
	needORT(t)
	r := sedd(t, "sample", "--model", tinyAbsorb, "--steps", "16", "--seed", "5").OK(t)
	if strings.TrimSpace(r.Stdout) == "" {
		t.Error("no text on stdout")
	}
	if r.Stderr != "" {
		t.Errorf("stderr is not a terminal, so it should stay quiet; got %q", r.Stderr)
	}
}

func TestSampleJSON(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		name, model string
		args        []string
		steps, nfe  int
		predictor   string
	}{
		{"absorb analytic", tinyAbsorb, nil, 128, 129, "analytic"},
		{"absorb euler without denoiser", tinyAbsorb, []string{"--predictor", "euler", "--steps", "10", "--denoise=false"}, 10, 10, "euler"},
		{"uniform none: only the denoiser runs the network", tinyUniform, []string{"--predictor", "none", "--steps", "12"}, 12, 1, "none"},
		{"absorb first-hitting: one call per free position", tinyAbsorb, []string{"--sampler", "first-hitting", "--prefix", "ab"}, 30, 30, "first-hitting"},
		{"absorb entropy-bounded at a tiny budget: one call per free position", tinyAbsorb, []string{"--sampler", "entropy-bounded", "--entropy-budget", "1e-9", "--prefix", "ab"}, 30, 30, "entropy-bounded"},
		{"absorb with the unmasking knobs", tinyAbsorb, []string{"--steps", "8", "--temperature", "0.5", "--top-k", "7", "--top-p", "0.9"}, 8, 9, "analytic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"sample", "--model", tc.model, "--json", "--batch", "3", "--seed", "9"}, tc.args...)
			knobs := slices.Contains(tc.args, "--top-k")
			lines := parseLines(t, sedd(t, args...).OK(t).Stdout)
			if len(lines) != 3 {
				t.Fatalf("got %d JSON lines, want 3", len(lines))
			}
			for i, l := range lines {
				if l.Index != i || len(l.Tokens) != 32 || l.Length != 32 || l.Steps != tc.steps || l.NFE != tc.nfe ||
					l.Predictor != tc.predictor || l.Seed != 9 || l.ElapsedMS == nil || l.NetworkMS == nil || l.Text == "" {
					t.Errorf("line %d = %+v", i, l)
				}
				if knobs != (l.Temperature == 0.5 && l.TopK == 7 && l.TopP == 0.9) || !knobs && (l.Temperature != 1 || l.TopK != 0 || l.TopP != 1) {
					t.Errorf("line %d: temperature %v, top-k %d, top-p %v", i, l.Temperature, l.TopK, l.TopP)
				}
				for _, tok := range l.Tokens {
					if tok < 0 || tok >= 256 {
						t.Errorf("line %d: token %d outside the vocabulary", i, tok)
					}
				}
			}
		})
	}
}

func TestSamplePrefixSuffix(t *testing.T) {
	needORT(t)
	lines := parseLines(t, sedd(t, "sample", "--model", tinyAbsorb, "--json", "--batch", "2", "--steps", "8",
		"--prefix", "Hello", "--suffix", "bye.").OK(t).Stdout)
	for _, l := range lines {
		// The byte tokenizer's ids are the bytes.
		if got := bytesOf(l.Tokens[:5]); got != "Hello" {
			t.Errorf("sample %d starts with %q, want Hello", l.Index, got)
		}
		if got := bytesOf(l.Tokens[len(l.Tokens)-4:]); got != "bye." {
			t.Errorf("sample %d ends with %q, want bye.", l.Index, got)
		}
		if !strings.HasPrefix(l.Text, "Hello") || !strings.HasSuffix(l.Text, "bye.") {
			t.Errorf("sample %d text %q lost its prefix or suffix", l.Index, l.Text)
		}
	}
}

func bytesOf(tokens []int) string {
	b := make([]byte, len(tokens))
	for i, t := range tokens {
		b[i] = byte(t)
	}
	return string(b)
}

func TestSampleSeed(t *testing.T) {
	needORT(t)
	run := func(seed string) string {
		return sedd(t, "sample", "--model", tinyAbsorb, "--steps", "20", "--batch", "2", "--seed", seed).OK(t).Stdout
	}
	a, b, c := run("42"), run("42"), run("43")
	if a != b {
		t.Errorf("the same seed gave different samples:\n%q\n%q", a, b)
	}
	if a == c {
		t.Errorf("seeds 42 and 43 gave the same samples %q", a)
	}
}

var frameHeader = regexp.MustCompile(`(?m)^--- step (\d+)/(\d+)  t=[0-9.]+  masked (\d+)/32$`)

func TestShowStepsPlainFrames(t *testing.T) {
	needORT(t)
	r := sedd(t, "sample", "--model", tinyAbsorb, "--steps", "6", "--seed", "1", "--show-steps").OK(t)
	frames := frameHeader.FindAllStringSubmatch(r.Stdout, -1)
	if len(frames) != 7 {
		t.Fatalf("got %d frames, want 7 (6 steps and the denoiser):\n%s", len(frames), r.Stdout)
	}
	for i, f := range frames {
		if f[1] != fmt.Sprint(i+1) || f[2] != "7" {
			t.Errorf("frame %d is %q", i, f[0])
		}
	}
	if frames[6][3] != "0" {
		t.Errorf("the last frame still has masks: %q", frames[6][0])
	}
	first := strings.SplitN(r.Stdout, "\n", 3)[1]
	if !strings.Contains(first, "_") {
		t.Errorf("the first frame %q shows no masks", first)
	}
	if strings.Contains(r.Stdout, "\x1b[") {
		t.Error("plain frames contain terminal escapes")
	}
}

func TestShowStepsJSONKeepsStdoutClean(t *testing.T) {
	needORT(t)
	r := sedd(t, "sample", "--model", tinyAbsorb, "--steps", "4", "--show-steps", "--json").OK(t)
	if n := len(parseLines(t, r.Stdout)); n != 1 {
		t.Errorf("got %d JSON lines, want 1", n)
	}
	if n := len(frameHeader.FindAllString(r.Stderr, -1)); n != 5 {
		t.Errorf("got %d frames on stderr, want 5", n)
	}
}

func TestInfill(t *testing.T) {
	needORT(t)
	const template = "ab[MASK:5]cd[MASK]ef"
	// Positions of the literal bytes in the 12-token result.
	literal := map[int]byte{0: 'a', 1: 'b', 7: 'c', 8: 'd', 10: 'e', 11: 'f'}
	for _, model := range []string{tinyAbsorb, tinyUniform} {
		t.Run(filepath.Base(model), func(t *testing.T) {
			lines := parseLines(t, sedd(t, "infill", "--model", model, "--json", "--batch", "3", "--steps", "16", template).OK(t).Stdout)
			if len(lines) != 3 {
				t.Fatalf("got %d samples, want 3", len(lines))
			}
			for _, l := range lines {
				if len(l.Tokens) != 12 || l.Length != 12 {
					t.Fatalf("sample %d has %d tokens (length %d), want 12", l.Index, len(l.Tokens), l.Length)
				}
				for pos, want := range literal {
					if l.Tokens[pos] != int(want) {
						t.Errorf("sample %d: token %d at position %d, want %q", l.Index, l.Tokens[pos], pos, want)
					}
				}
			}
		})
	}
	t.Run("text output", func(t *testing.T) {
		out := sedd(t, "infill", "--model", tinyAbsorb, "--steps", "8", "The [MASK:3] end.").OK(t).Stdout
		if !strings.HasPrefix(out, "The ") || !strings.HasSuffix(out, " end.\n") {
			t.Errorf("infill text %q lost its literal text", out)
		}
	})
}

func TestVerify(t *testing.T) {
	needORT(t)
	for _, model := range []string{tinyAbsorb, tinyUniform} {
		t.Run(filepath.Base(model), func(t *testing.T) {
			r := sedd(t, "verify", model).OK(t)
			if !strings.Contains(r.Stdout, "max relative error") || !strings.Contains(r.Stdout, ": ok") {
				t.Errorf("verify output:\n%s", r.Stdout)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		var rep struct {
			Kind      string  `json:"kind"`
			OK        bool    `json:"ok"`
			Tolerance float64 `json:"tolerance"`
			Cases     []struct {
				RelLogScore *float64 `json:"rel_log_score"`
			} `json:"cases"`
		}
		if err := json.Unmarshal([]byte(sedd(t, "verify", "--json", "--model", tinyAbsorb).OK(t).Stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Kind != "sedd" || len(rep.Cases) == 0 || rep.Cases[0].RelLogScore == nil || rep.Tolerance != 1e-4 {
			t.Errorf("report %+v", rep)
		}
	})
	t.Run("an evaluator is for sedd-bench verify", func(t *testing.T) {
		r := sedd(t, "verify", cmdtest.Abs("../../models/brown-sedd-small-ar"))
		if r.Code != exitRuntime || !strings.Contains(r.Stderr, "causal-lm") {
			t.Errorf("exit %d, stderr %q", r.Code, r.Stderr)
		}
	})
	t.Run("corrupted golden outputs", func(t *testing.T) {
		dir := copyModel(t, tinyAbsorb)
		bin := filepath.Join(dir, "golden.bin")
		raw, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		copy(raw, []byte{0, 0, 0x7a, 0x44}) // float32 1000 over the first log score
		if err := os.WriteFile(bin, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		testlib.Rehash(t, dir) // the golden value is wrong, not the file
		r := sedd(t, "verify", dir)
		if r.Code != 1 || !strings.Contains(r.Stdout, "FAIL") || !strings.Contains(r.Stderr, "exceeds") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
		}
	})
}

// copyModel copies a model directory into a temporary one.
func copyModel(t *testing.T, src string) string { return testlib.CopyDir(t, src) }

func TestInfo(t *testing.T) {
	needORT(t)
	r := sedd(t, "info", tinyAbsorb).OK(t)
	for _, want := range []string{"tiny-absorb", "53,761", "absorb (257 states", "loglinear", "32 tokens",
		"256 tokens, bytes tokenizer", "onnx runtime", command.ORTLib, "ONNXRUNTIME_SHARED_LIBRARY_PATH", "cpu"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("info lacks %q:\n%s", want, r.Stdout)
		}
	}
	var info sdk.Info
	if err := json.Unmarshal([]byte(sedd(t, "info", "--json", "--model", tinyUniform).OK(t).Stdout), &info); err != nil {
		t.Fatal(err)
	}
	var man struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(info.Manifest, &man); err != nil {
		t.Fatal(err)
	}
	if info.Graph != "uniform" || info.States != 256 || info.Params <= 0 || info.ORTVersion == "" ||
		info.LibraryPath != command.ORTLib || info.LibrarySource != "env" || info.Provider != "cpu" ||
		man.Name != "tiny-uniform" || info.Name != "tiny-uniform" || !strings.Contains(info.ExportedWith, "torch") {
		t.Errorf("info --json = %+v", info)
	}
}

func TestBadInput(t *testing.T) {
	needORT(t)
	broken := copyModel(t, tinyAbsorb)
	if err := os.Truncate(filepath.Join(broken, "model.onnx"), 1000); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"unknown flag", []string{"sample", "--bogus"}, exitUsage, "-bogus"},
		{"unknown command", []string{"smaple"}, exitUsage, `unknown command "smaple"`},
		{"missing model dir", []string{"sample", "--model", "no/such/model"}, exitRuntime, "does not exist"},
		{"broken model", []string{"sample", "--model", broken}, exitRuntime, "1000 bytes, but sedd.json records"},
		{"template longer than the model", []string{"infill", "--model", tinyAbsorb, "x[MASK:40]"}, exitUsage, "the template is at least 41 tokens but the model's length is 32"},
		{"empty template", []string{"infill", "--model", tinyAbsorb, ""}, exitUsage, "template is empty"},
		{"steps 0", []string{"sample", "--model", tinyAbsorb, "--steps", "0"}, exitUsage, "--steps must be ≥ 1"},
		{"eps 2", []string{"sample", "--model", tinyAbsorb, "--eps", "2"}, exitUsage, "--end-time must be in (0, 1)"},
		{"batch 0", []string{"sample", "--model", tinyAbsorb, "--batch", "0"}, exitUsage, "--batch"},
		{"unknown predictor", []string{"sample", "--model", tinyAbsorb, "--predictor", "foo"}, exitUsage, "--sampler \"foo\" is not a sampler"},
		{"negative length", []string{"sample", "--model", tinyAbsorb, "--length", "-3"}, exitUsage, "--length must be ≥ 1"},
		{"first-hitting with steps", []string{"sample", "--model", tinyAbsorb, "--sampler", "first-hitting", "--steps", "8"}, exitUsage, "leave out --steps"},
		{"first-hitting on a uniform model", []string{"sample", "--model", tinyUniform, "--sampler", "first-hitting"}, exitUsage, "--sampler the first-hitting sampler needs an absorbing model"},
		{"negative temperature", []string{"sample", "--model", tinyAbsorb, "--temperature", "-1"}, exitUsage, "--temperature must be in [0, 100]"},
		{"confidence with steps", []string{"sample", "--model", tinyAbsorb, "--sampler", "confidence", "--steps", "8"}, exitUsage, "leave out --steps"},
		{"threshold 0", []string{"sample", "--model", tinyAbsorb, "--sampler", "confidence", "--threshold", "0"}, exitUsage, "--threshold must be in (0, 1]"},
		{"threshold with analytic", []string{"sample", "--model", tinyAbsorb, "--threshold", "0.5"}, exitUsage, "--threshold is a setting of the confidence sampler"},
		{"negative entropy budget", []string{"sample", "--model", tinyAbsorb, "--sampler", "entropy-bounded", "--entropy-budget", "-1"}, exitUsage, "--entropy-budget must be a finite number of nats"},
		{"negative top-k", []string{"sample", "--model", tinyAbsorb, "--top-k", "-1"}, exitUsage, "--top-k must be ≥ 1"},
		{"top-p 2", []string{"sample", "--model", tinyAbsorb, "--top-p", "2"}, exitUsage, "--top-p must be in [0, 1]"},
		{"top-k on a uniform model", []string{"sample", "--model", tinyUniform, "--top-k", "3"}, exitUsage, "--top-k acts on the token a mask unmasks to"},
		{"block overlap of the whole window", []string{"sample", "--model", tinyAbsorb, "--length", "64", "--block-overlap", "32"}, exitUsage, "--block-overlap must be below the trained length 32"},
		{"eval antithetic with odd timesteps", []string{"eval", "--model", tinyAbsorb, "--data", cmdtest.Abs("../../README.md"), "--sampling", "antithetic", "-k", "3"}, exitUsage, "--timesteps must be even"},
		{"unknown device", []string{"sample", "--model", tinyAbsorb, "--device", "tpu"}, exitUsage, "cpu, cuda or cuda:N"},
		{"not a number", []string{"sample", "--steps", "many"}, exitUsage, "steps"},
		{"prefix longer than the model", []string{"sample", "--model", tinyAbsorb, "--prefix", strings.Repeat("x", 40)}, exitUsage, "raise the length"},
		{"prefix and prefix file", []string{"sample", "--model", tinyAbsorb, "--prefix", "a", "--prefix-file", "x.txt"}, exitUsage, "not both"},
		{"missing prefix file", []string{"sample", "--model", tinyAbsorb, "--prefix-file", "no-such-file.txt"}, exitUsage, "no-such-file.txt"},
		{"unclosed [MASK:", []string{"infill", "--model", tinyAbsorb, "a [MASK:3 b"}, exitUsage, "without a closing"},
		{"[MASK:0]", []string{"infill", "--model", tinyAbsorb, "a [MASK:0] b"}, exitUsage, "between 1 and"},
		{"infill without template", []string{"infill", "--model", tinyAbsorb}, exitUsage, "needs a TEMPLATE"},
		{"flags after the template", []string{"infill", "--model", tinyAbsorb, "a [MASK] b", "--seed", "1"}, exitUsage, "flags go before it"},
		{"missing data file", []string{"eval", "--model", tinyAbsorb, "--data", "no-such-file.txt"}, exitUsage, "no-such-file.txt"},
		{"missing ONNX Runtime library", []string{"sample", "--model", tinyAbsorb, "--ort-lib", "/no/such/libonnxruntime.so"}, exitRuntime, "--ort-lib"},
		{"eval without data", []string{"eval", "--model", tinyAbsorb}, exitUsage, "--data FILE"},
		{"eval with one timestep", []string{"eval", "--model", tinyAbsorb, "--data", "x.txt", "-k", "1"}, exitUsage, "--timesteps must be ≥ 2"},
		{"eval with unknown documents", []string{"eval", "--model", tinyAbsorb, "--data", "x.txt", "--documents", "paragraphs"}, exitUsage, "use file, lines or eos"},
		{"eval with lines and documents eos", []string{"eval", "--model", tinyAbsorb, "--data", "x.txt", "--lines", "--documents", "eos"}, exitUsage, "cannot go with --documents eos"},
		{"verify missing dir", []string{"verify", "no/such/model"}, exitRuntime, "does not exist"},
		{"threads 0", []string{"info", tinyAbsorb, "--threads", "0"}, exitUsage, ""},
		{"threads 100000", []string{"sample", "--model", tinyAbsorb, "--threads", "100000"}, exitUsage, "threads must be between 1 and"},
		{"batch past the memory limit", []string{"sample", "--batch", "4095", "--steps", "1"}, exitUsage, "more than --memory-limit"},
		{"batch past a small memory limit", []string{"sample", "--model", tinyAbsorb, "--batch", "64", "--memory-limit", "1MiB"}, exitUsage, "raise --memory-limit"},
		{"bad memory limit", []string{"sample", "--model", tinyAbsorb, "--memory-limit", "lots"}, exitUsage, "--memory-limit"},
		{"eval of an empty file", []string{"eval", "--model", tinyAbsorb, "--data", empty}, exitUsage, "nothing to evaluate"},
		{"eval of a device", []string{"eval", "--model", tinyAbsorb, "--data", "/dev/null"}, exitUsage, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sedd(t, tc.args...)
			if r.Code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.Code, tc.code, r.Stderr)
			}
			if !strings.HasPrefix(r.Stderr, "sedd: ") || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("stderr %q does not start with \"sedd: \" and mention %q", r.Stderr, tc.want)
			}
			if n := strings.Count(r.Stderr, "\n"); n > 2 {
				t.Errorf("stderr has %d lines, want a one-line message (and a usage hint):\n%s", n, r.Stderr)
			}
			if r.Stdout != "" {
				t.Errorf("stdout %q, want nothing", r.Stdout)
			}
		})
	}
}

func TestBuiltInModel(t *testing.T) {
	needORT(t)
	// No flags, no SEDD_MODEL, a directory outside the repository and an
	// empty cache: the built-in model is used, and nothing is written.
	r := sedd(t, "sample", "--steps", "8", "--seed", "1", "--json").OK(t)
	lines := parseLines(t, r.Stdout)
	if len(lines) != 1 || lines[0].Text == "" {
		t.Fatalf("sample from the built-in model: %q", r.Stdout)
	}
	info := sedd(t, "info").OK(t)
	if !strings.Contains(info.Stdout, "built-in model brown-sedd-small") {
		t.Errorf("info does not name the built-in model:\n%s", info.Stdout)
	}
	// Nothing is written anywhere: no extracted model in the cache, and none
	// of ONNX Runtime's telemetry files (mat-debug-PID.log in the temporary
	// directory, an event database under the cache).
	home, tmp, work := t.TempDir(), t.TempDir(), t.TempDir()
	cmd := exec.Command(command.Binary, "sample", "--steps", "4", "--seed", "2")
	cmd.Dir = work
	cmd.Env = append(childEnv(t), "HOME="+home, "TMPDIR="+tmp, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local", "share"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, d := range []string{home, tmp, work} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			t.Errorf("sedd sample wrote %s", filepath.Join(d, e.Name()))
		}
	}
}

func TestModelFromEnvironment(t *testing.T) {
	needORT(t)
	cmd := exec.Command(command.Binary, "info", "--json")
	cmd.Dir = t.TempDir()
	cmd.Env = append(childEnv(t), envModel+"="+tinyUniform)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v", err)
	}
	var info sdk.Info
	if err := json.Unmarshal(out, &info); err != nil || info.Name != "tiny-uniform" {
		t.Errorf("info with %s set: %+v, %v", envModel, info, err)
	}
}

func TestCUDA(t *testing.T) {
	needORT(t)
	r := sedd(t, "info", "--json", "--device", "cuda", tinyAbsorb)
	if r.Code == 0 {
		// A CUDA build of ONNX Runtime on a machine with a GPU.
		var info sdk.Info
		if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil || !strings.Contains(strings.ToLower(info.Provider), "cuda") {
			t.Errorf("--device cuda succeeded but runs on %q (%v)", info.Provider, err)
		}
		return
	}
	if r.Code != exitRuntime || !strings.Contains(r.Stderr, "CUDA") || !strings.Contains(r.Stderr, "--cpu-fallback") {
		t.Errorf("--device cuda without CUDA: exit %d, stderr %q", r.Code, r.Stderr)
	}
	r = sedd(t, "info", "--json", "--device", "cuda", "--cpu-fallback", tinyAbsorb).OK(t)
	var info sdk.Info
	if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil || !info.FellBackToCPU || info.Provider != "cpu" {
		t.Errorf("--cpu-fallback: %+v, %v", info, err)
	}
	if !strings.Contains(r.Stderr, "warning") {
		t.Errorf("no warning about the fallback on stderr: %q", r.Stderr)
	}
}

func TestInterrupt(t *testing.T) {
	needORT(t)
	cmd := exec.Command(command.Binary, "sample", "--model", tinyAbsorb, "--steps", "10000000", "--show-steps")
	cmd.Dir = t.TempDir()
	cmd.Env = childEnv(t)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the first frame: the run has started.
	br := bufio.NewReader(stdout)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, br)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("sedd did not stop within 20 s of SIGINT")
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want status %d; stderr %q", err, exitInterrupted, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr %q", stderr.String())
	}
	t.Logf("stopped %v after SIGINT", time.Since(sent).Round(time.Millisecond))
}

// Terminal tests: sedd runs with stdout and stderr on a pseudo-terminal.

var cursorUp = regexp.MustCompile(`\x1b\[\d+A`)

func TestShowStepsTerminal(t *testing.T) {
	needORT(t)
	out := onTerminal(t, "sample", "--model", tinyAbsorb, "--steps", "2000", "--seed", "2", "--show-steps")
	if strings.Contains(out, "--- step") {
		t.Errorf("plain frames on a terminal:\n%q", out)
	}
	redraws := len(cursorUp.FindAllString(out, -1))
	if redraws < 2 || !strings.Contains(out, "\r\x1b[J") {
		t.Errorf("%d cursor-up redraws, want several; output %q", redraws, out)
	}
	if !strings.Contains(out, "step 1/2001") || !strings.Contains(out, "step 2001/2001") {
		t.Errorf("first or last frame missing")
	}
	if !strings.Contains(out, maskOnTerminal) {
		t.Errorf("no mask glyph %q in the frames", maskOnTerminal)
	}
}

func TestShowStepsTerminalFitsTheScreen(t *testing.T) {
	needORT(t)
	// 40 samples of 32 bytes do not fit in 30 lines: the frame is cut so
	// that cursor-up redraws stay on the screen.
	out := onTerminal(t, "sample", "--model", tinyAbsorb, "--steps", "50", "--batch", "40", "--show-steps")
	for _, m := range cursorUp.FindAllString(out, -1) {
		var n int
		fmt.Sscanf(m, "\x1b[%dA", &n)
		if n > 29 {
			t.Fatalf("redraw moves the cursor up %d lines on a 30-line terminal", n)
		}
	}
	if !strings.Contains(out, "more samples") {
		t.Error("no note about the samples left out")
	}
}

func TestProgressBarTerminal(t *testing.T) {
	needORT(t)
	out := onTerminal(t, "sample", "--model", tinyAbsorb, "--steps", "3000")
	if !strings.Contains(out, "\r\x1b[Ksampling [") || !strings.Contains(out, "/3001 steps") {
		t.Errorf("no progress bar redrawn with \\r in %q", out)
	}
	// The bar is cleared before the sample is printed.
	if tail := out[strings.LastIndex(out, "sampling ["):]; !strings.Contains(tail, "\r\x1b[K") {
		t.Errorf("the bar was not cleared before the sample: %q", tail)
	}
}

// onTerminal runs sedd with stdout and stderr on a new pseudo-terminal and
// returns everything it wrote there.
func onTerminal(t *testing.T, args ...string) string {
	t.Helper()
	master, slave, err := openPTY(100, 30)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	cmd := exec.Command(command.Binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(childEnv(t), "TERM=xterm")
	cmd.Stdout, cmd.Stderr = slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, master) // ends with EIO once the child has exited
		close(copied)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("sedd did not finish within 60 s")
	}
	<-copied
	if err != nil {
		t.Fatalf("sedd %s: %v\n%q", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestEval(t *testing.T) {
	needORT(t)
	data := filepath.Join(t.TempDir(), "text.txt")
	text := "It was a bright cold day in April, and the clocks were striking thirteen.\nThe jury said it did find that the court had been right.\n"
	if err := os.WriteFile(data, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	type evalOut struct {
		Timesteps  int     `json:"timesteps"`
		Tokens     int     `json:"tokens"`
		Perplexity float64 `json:"perplexity"`
		Low        float64 `json:"perplexity_low"`
		High       float64 `json:"perplexity_high"`
		Sequences  []struct {
			Tokens int `json:"tokens"`
		} `json:"sequences"`
	}
	eval := func(args ...string) (evalOut, string) {
		out := sedd(t, append([]string{"eval", "--data", data, "--json", "-k", "8", "--seed", "3"}, args...)...).OK(t).Stdout
		var e evalOut
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		return e, out
	}
	for _, tc := range []struct {
		name    string
		args    []string
		tokens  int // the byte tokenizer has no end-of-text token
		windows int
	}{
		{"absorb, whole file", []string{"--model", tinyAbsorb}, len(text), (len(text) + 31) / 32},
		{"uniform, lines, drop the short window", []string{"--model", tinyUniform, "--lines", "--drop-last"}, len(text) - 2 - (len(text)-2)%32, (len(text) - 2) / 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, out := eval(tc.args...)
			if e.Tokens != tc.tokens || len(e.Sequences) != tc.windows || e.Timesteps != 8 {
				t.Errorf("%d tokens in %d windows, want %d in %d", e.Tokens, len(e.Sequences), tc.tokens, tc.windows)
			}
			// A random network is about as good as uniform guessing: 256.
			if !(e.Low <= e.Perplexity && e.Perplexity <= e.High) || e.Perplexity < 50 || e.Perplexity > 5000 {
				t.Errorf("perplexity %g [%g, %g]", e.Perplexity, e.Low, e.High)
			}
			if _, again := eval(tc.args...); withoutTiming(again) != withoutTiming(out) {
				t.Error("the same seed gave different results")
			}
		})
	}
	t.Run("text output", func(t *testing.T) {
		r := sedd(t, "eval", "--model", tinyAbsorb, "--data", data, "-k", "4").OK(t)
		if !strings.Contains(r.Stdout, "perplexity  ≤ ") || !strings.Contains(r.Stdout, "nats/token") {
			t.Errorf("eval output:\n%s", r.Stdout)
		}
	})
}

// TestEvalDocuments checks --documents eos: documents separated by
// <|endoftext|> lines are scored exactly as the same documents one per line
// (--lines), each followed by the end-of-text token, and a model without one
// refuses it.
func TestEvalDocuments(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	docs := []string{"It was a bright cold day in April, and the clocks were striking thirteen.",
		"The jury said it did find that the court had been right.", "Plainfield -- James P. Mitchell and Sen. Walter."}
	separated := write("separated.txt", "\n"+strings.Join(docs, "\n<|endoftext|>\n\n")+"\n<|endoftext|>\n")
	perLine := write("lines.txt", strings.Join(docs, "\n")+"\n")
	shipped := cmdtest.Abs("../../models/brown-sedd-small")
	eval := func(args ...string) string {
		return withoutTiming(sedd(t, append([]string{"eval", "--model", shipped, "--json", "-k", "2", "--seed", "5", "--length", "16"}, args...)...).OK(t).Stdout)
	}
	eos, lines, whole := eval("--data", separated, "--documents", "eos"), eval("--data", perLine, "--lines"), eval("--data", separated)
	if eos != lines {
		t.Errorf("--documents eos:\n%s\nwant the --lines result:\n%s", eos, lines)
	}
	if eos == whole {
		t.Error("--documents eos gave the whole-file result")
	}
	r := sedd(t, "eval", "--model", tinyAbsorb, "--data", separated, "--documents", "eos")
	if r.Code != exitUsage || !strings.Contains(r.Stderr, "no end-of-text token") {
		t.Errorf("eos split with a byte tokenizer: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// withoutTiming drops the wall-clock lines of eval's indented JSON, the only
// ones that may differ between two runs with the same seed.
func withoutTiming(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, `"elapsed_ms"`) && !strings.Contains(l, `"tokens_per_second"`) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestSampleNoCache: on the time-independent fixture the network calls drop
// to at most one per token plus one; --no-cache restores one per step, with
// the same tokens; in a batch the rows evaluated (network_rows) drop too.
func TestSampleNoCache(t *testing.T) {
	needORT(t)
	args := []string{"sample", "--model", cmdtest.Abs("../../sdk/testdata/tiny-absorb-ti"), "--json", "--seed", "4", "--steps", "256"}
	cached := parseLines(t, sedd(t, args...).OK(t).Stdout)
	plain := parseLines(t, sedd(t, append(args, "--no-cache")...).OK(t).Stdout)
	if len(cached) != 1 || len(plain) != 1 || cached[0].NFE > 33 || plain[0].NFE != 257 || !slices.Equal(cached[0].Tokens, plain[0].Tokens) ||
		cached[0].Rows != cached[0].NFE || plain[0].Rows != 257 {
		t.Errorf("cached %+v\nuncached %+v", cached, plain)
	}
	// a batch: each call evaluates only the rows that moved
	batch := parseLines(t, sedd(t, append(args, "--batch", "4")...).OK(t).Stdout)
	plain = parseLines(t, sedd(t, append(args, "--batch", "4", "--no-cache")...).OK(t).Stdout)
	for i := range batch {
		if len(batch) != 4 || len(plain) != 4 || batch[i].Rows > 4*33 || batch[i].Rows >= 4*batch[i].NFE || plain[i].Rows != 4*257 ||
			!slices.Equal(batch[i].Tokens, plain[i].Tokens) {
			t.Errorf("batch 4, sample %d: cached %+v\nuncached %+v", i, batch[i], plain[i])
		}
	}
}

// TestSampleBlocks: --length above the trained length with --block-overlap
// samples in blocks: the prefix kept, no mask left, the network calls of
// three blocks, and block_overlap in the JSON.
func TestSampleBlocks(t *testing.T) {
	needORT(t)
	lines := parseLines(t, sedd(t, "sample", "--model", tinyAbsorb, "--json", "--seed", "3", "--steps", "4",
		"--length", "80", "--block-overlap", "8", "--prefix", "Once").OK(t).Stdout)
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	l := lines[0]
	if len(l.Tokens) != 80 || l.Length != 80 || l.NFE != 15 || l.BlockOverlap != 8 || !strings.HasPrefix(l.Text, "Once") {
		t.Errorf("line %+v", l)
	}
	if slices.Contains(l.Tokens, 256) {
		t.Errorf("mask left: %v", l.Tokens)
	}
}
