package sdk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/manifest"
	"github.com/sedd-go/sedd/sdk/runtime"
	"github.com/sedd-go/sedd/sdk/tokenizer"
)

// Model is an opened SEDD model directory (ONNX-CONTRACT.md): its manifest,
// tokenizer and score network. A Model is safe for concurrent use by many
// goroutines; each call borrows its own ONNX Runtime input and output tensors,
// which are kept for the next call.
type Model struct {
	dir   string
	man   *manifest.Manifest
	tok   *tokenizer.Tokenizer
	sess  *runtime.Session
	graph diffusion.Graph
	noise diffusion.Noise
	opts  options

	// mu is held shared by every call in flight and exclusively by Close,
	// so Close waits for running calls and later calls see closed.
	mu     sync.RWMutex
	closed bool

	scorers pool[*runtime.Scorer]
}

// Open loads the model directory dir: it reads and validates sedd.json, checks
// model.onnx against it (size, sha256, graph inputs and outputs), loads the
// tokenizer and checks its vocabulary against the manifest, and creates the
// ONNX Runtime session. Every refusal is an error that names the file and the
// field; see the package documentation for the errors callers can match.
func Open(dir string, opts ...Option) (*Model, error) {
	o, err := resolveOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkDir(dir, "model"); err != nil {
		return nil, err
	}
	man, err := manifest.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("open model %s: %w", dir, err)
	}
	if man.Kind != "" && man.Kind != manifest.KindSEDD {
		return nil, fmt.Errorf("open model %s: %w: sedd.json describes a %q model, not a SEDD score network", dir, manifest.ErrKind, man.Kind)
	}
	m := &Model{dir: dir, man: man, opts: o}
	if m.graph, m.noise, err = Diffusion(man); err != nil {
		return nil, fmt.Errorf("open model %s: %w", dir, err)
	}
	if err := checkONNX(filepath.Join(dir, man.ONNX.File), man.ONNX.SHA256, man.ONNX.ExternalData, o); err != nil {
		return nil, fmt.Errorf("open model %s: %w", dir, err)
	}
	m.tok, err = tokenizer.Load(filepath.Join(dir, man.Tokenizer.File))
	if err != nil {
		return nil, fmt.Errorf("open model %s: tokenizer: %w", dir, err)
	}
	if v := m.tok.VocabSize(); v != man.Tokens {
		return nil, fmt.Errorf("open model %s: %w: %s has %d tokens but sedd.json says tokens=%d",
			dir, ErrTokenizerMismatch, man.Tokenizer.File, v, man.Tokens)
	}
	m.sess, err = runtime.Open(dir, man, o.runtimeOptions()...)
	if err != nil {
		return nil, fmt.Errorf("open model %s: %w", dir, err)
	}
	if fb := m.sess.FellBack(); fb != nil {
		o.warn(fmt.Sprintf("running on CPU: %v", fb))
	}
	return m, nil
}

// resolveOptions applies opts to the defaults.
func resolveOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	return o, nil
}

// checkDir refuses a dir that does not exist or is not a directory; what
// names it in the message ("model", "evaluator").
func checkDir(dir, what string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", what, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("open %s: %s is not a directory (give the %s's directory, holding sedd.json and model.onnx)", what, dir, what)
	}
	return nil
}

// checkONNX checks the network file at path before ONNX Runtime loads it: a
// regular file, with the sha256 of the manifest unless o turns that off or
// the weights are in external files.
func checkONNX(path, sha256 string, external bool, o options) error {
	if err := checkModelFile(path); err != nil {
		return err
	}
	if o.verifySHA && sha256 != "" && !external {
		return checkSHA256(path, sha256)
	}
	return nil
}

// runtimeOptions turns o into the runtime package's session options.
func (o options) runtimeOptions() []runtime.Option {
	ropts := []runtime.Option{runtime.WithIntraOpThreads(o.threads)}
	if o.libraryPath != "" {
		ropts = append(ropts, runtime.WithLibrary(o.libraryPath))
	}
	if o.device.CUDA {
		ropts = append(ropts, runtime.WithCUDA(o.device.ID))
		if o.cpuFallback {
			ropts = append(ropts, runtime.WithCPUFallback())
		}
	}
	return ropts
}

// ErrTokenizerMismatch marks a tokenizer.json whose vocabulary disagrees with sedd.json.
var ErrTokenizerMismatch = errors.New("tokenizer does not match the model")

// ErrChecksum marks a model.onnx whose sha256 differs from the one in sedd.json.
var ErrChecksum = errors.New("model.onnx checksum mismatch")

// checkModelFile refuses a model file that is not a regular file (a
// directory, a pipe or a device such as /dev/zero, which hashing would read
// forever) before the file is hashed. Its size is checked against sedd.json
// by runtime.Open, after the checksum.
func checkModelFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return &runtime.GraphError{Err: runtime.ErrNotONNX, Path: path, Detail: fmt.Sprintf(
			"not a regular file (%v); a model is a file written by export/export.py", st.Mode().Type())}
	}
	return nil
}

func checkSHA256(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: %s has sha256 %s, sedd.json records %s (corrupt or replaced file: export it again)", ErrChecksum, path, got, want)
	}
	return nil
}

// Diffusion returns the graph and noise schedule a manifest describes.
func Diffusion(man *manifest.Manifest) (diffusion.Graph, diffusion.Noise, error) {
	var g diffusion.Graph
	switch man.Graph {
	case manifest.GraphAbsorb:
		g = diffusion.Absorbing{Tokens: man.Tokens}
	case manifest.GraphUniform:
		g = diffusion.Uniform{Tokens: man.Tokens}
	default:
		return nil, nil, fmt.Errorf("%w: %q", manifest.ErrGraph, man.Graph)
	}
	var n diffusion.Noise
	switch man.Noise.Type {
	case manifest.NoiseLogLinear:
		n = diffusion.LogLinear{Eps: man.Noise.Eps}
	case manifest.NoiseGeometric:
		n = diffusion.Geometric{SigmaMin: man.Noise.SigmaMin, SigmaMax: man.Noise.SigmaMax}
	default:
		return nil, nil, fmt.Errorf("%w: %q", manifest.ErrNoise, man.Noise.Type)
	}
	if err := g.Validate(); err != nil {
		return nil, nil, err
	}
	if err := n.Validate(); err != nil {
		return nil, nil, err
	}
	return g, n, nil
}

// Close releases the ONNX Runtime session and every tensor. It waits for calls
// in flight to return. Close is idempotent; later calls fail with ErrClosed.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return errors.Join(m.scorers.close(), m.sess.Close())
}

// enter marks a call in flight; it fails once the model is closed.
func (m *Model) enter() error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (m *Model) leave() { m.mu.RUnlock() }

// scorer borrows a Scorer (tensors of its own) from the pool.
func (m *Model) scorer() (*runtime.Scorer, error) { return m.scorers.get(m.sess.NewScorer) }

// release returns a Scorer to the pool, keeping at most a few.
func (m *Model) release(sc *runtime.Scorer) { m.scorers.put(sc) }

// Manifest returns a copy of the model's sedd.json.
func (m *Model) Manifest() manifest.Manifest { return *m.man }

// Dir returns the model directory.
func (m *Model) Dir() string { return m.dir }

// Tokenizer returns the model's tokenizer. It is safe for concurrent use.
func (m *Model) Tokenizer() *tokenizer.Tokenizer { return m.tok }

// Graph returns the model's diffusion graph.
func (m *Model) Graph() diffusion.Graph { return m.graph }

// Noise returns the model's noise schedule.
func (m *Model) Noise() diffusion.Noise { return m.noise }

// Info describes an opened model and where it runs.
type Info struct {
	Dir, Name      string
	Graph, Noise   string
	Tokens, States int
	Length         int
	Params         int64
	Hidden, Blocks int
	Heads, CondDim int
	ScaleBySigma   bool
	ONNXFile       string
	ONNXSize       int64
	ORTVersion     string
	LibraryPath    string
	LibrarySource  string
	LibraryReason  string
	Provider       string
	FellBackToCPU  bool
	TokenizerKind  string
	SpecialTokens  map[string]int
	Threads        int
}

// Info reports the model's manifest, the ONNX Runtime library in use and the
// execution provider.
func (m *Model) Info() Info {
	man := m.man
	noise := man.Noise.Type
	switch man.Noise.Type {
	case manifest.NoiseLogLinear:
		noise = fmt.Sprintf("loglinear(eps=%g)", man.Noise.Eps)
	case manifest.NoiseGeometric:
		noise = fmt.Sprintf("geometric(sigma_min=%g, sigma_max=%g)", man.Noise.SigmaMin, man.Noise.SigmaMax)
	}
	lib := m.sess.Library()
	return Info{
		Dir: m.dir, Name: man.Name, Graph: man.Graph, Noise: noise,
		Tokens: man.Tokens, States: man.N(), Length: man.Length,
		Params: man.Model.Params, Hidden: man.Model.HiddenSize, Blocks: man.Model.NBlocks,
		Heads: man.Model.NHeads, CondDim: man.Model.CondDim, ScaleBySigma: man.Model.ScaleBySigma,
		ONNXFile: filepath.Join(m.dir, man.ONNX.File), ONNXSize: man.ONNX.Size,
		ORTVersion: m.sess.Version(), LibraryPath: lib.Path, LibrarySource: lib.Source, LibraryReason: lib.Reason,
		Provider: m.sess.Provider(), FellBackToCPU: m.sess.FellBack() != nil,
		TokenizerKind: man.Tokenizer.Kind, SpecialTokens: man.Tokenizer.SpecialTokens,
		Threads: m.opts.threads,
	}
}
