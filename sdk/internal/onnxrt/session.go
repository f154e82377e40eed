package onnxrt

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/sedd-go/sedd/sdk/internal/manifest"
)

// Names of the score network's inputs and outputs (docs/ONNX-CONTRACT.md).
const (
	InputIndices = "indices"
	InputSigma   = "sigma"
	// InputRows is the optional third input: the flat positions b*length+i
	// whose output is wanted (the output head runs on those only).
	InputRows      = "rows"
	OutputLogScore = "log_score"
	OutputLSE      = "log_score_lse"
)

// Option configures Open and OpenFile.
type Option func(*config) error

type config struct {
	library  string
	intraOp  int
	interOp  int
	cuda     bool
	deviceID int
	fallback bool
	// saveOptimized, when set, is where ONNX Runtime writes the graph it
	// optimized, its weights in saveOptimized + ".data".
	saveOptimized string
	// preoptimized loads a graph written that way, without optimizing it
	// again.
	preoptimized bool
}

// WithSaveOptimized makes ONNX Runtime write the graph as it optimized it
// to path while creating the session, with every weight of 1 KiB or more in
// the external-data file path + ".data" (which a later session maps into
// memory instead of copying); see WithPreoptimized.
func WithSaveOptimized(path string) Option {
	return func(c *config) error {
		c.saveOptimized = path
		return nil
	}
}

// WithPreoptimized loads a graph that WithSaveOptimized wrote, with ONNX
// Runtime's graph optimizations off: they were applied already, for this
// ONNX Runtime and this CPU.
func WithPreoptimized() Option {
	return func(c *config) error {
		c.preoptimized = true
		return nil
	}
}

// WithLibrary names the ONNX Runtime shared library explicitly, ahead of
// every other place FindLibrary searches.
func WithLibrary(path string) Option {
	return func(c *config) error {
		c.library = path
		return nil
	}
}

// WithIntraOpThreads sets the number of threads one forward pass may use
// (default: the number of CPUs).
func WithIntraOpThreads(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("runtime: intra-op threads %d: must be > 0", n)
		}
		c.intraOp = n
		return nil
	}
}

// WithInterOpThreads sets the number of threads that run independent graph
// nodes in parallel (default 1).
func WithInterOpThreads(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("runtime: inter-op threads %d: must be > 0", n)
		}
		c.interOp = n
		return nil
	}
}

// WithCUDA runs the model on ONNX Runtime's CUDA execution provider on the
// given device. It needs a GPU build of ONNX Runtime; with a CPU-only build
// session creation fails with ErrCUDAUnavailable, unless WithCPUFallback is
// also given.
//
// Loading the CUDA provider may replace the Go runtime's signal handlers
// (onnxruntime_go issue 140); such a session puts Go's back after it is set
// up and after every forward pass (RestoredSignals).
func WithCUDA(deviceID int) Option {
	return func(c *config) error {
		if deviceID < 0 {
			return fmt.Errorf("runtime: CUDA device %d: must be ≥ 0", deviceID)
		}
		c.cuda, c.deviceID = true, deviceID
		return nil
	}
}

// WithCPUFallback makes a session asked to run on CUDA fall back to the CPU
// when the CUDA provider is unavailable. Session.FellBack then reports why.
func WithCPUFallback() Option {
	return func(c *config) error {
		c.fallback = true
		return nil
	}
}

// CUDAError reports that the CUDA execution provider could not be set up.
type CUDAError struct {
	DeviceID int
	Library  string
	// Cause is ONNX Runtime's own error.
	Cause error
}

// Error explains the failure and what to do.
func (e *CUDAError) Error() string {
	return fmt.Sprintf("%v on device %d: %v; %s", ErrCUDAUnavailable, e.DeviceID, e.Cause, e.hint())
}

// hint says what to do about the CUDA provider's failure, by the stage at
// which ONNX Runtime's message shows it failed.
func (e *CUDAError) hint() string {
	install := "install a GPU build of ONNX Runtime (the onnxruntime-linux-x64-gpu release tarball, " +
		"with matching CUDA and cuDNN libraries on the loader path) and point ONNXRUNTIME_SHARED_LIBRARY_PATH at it, " +
		"or run on the CPU"
	msg := e.Cause.Error()
	switch {
	case strings.Contains(msg, "not enabled in this build"):
		// The core cannot load a CUDA provider at all, whatever lies beside it.
		return "the library " + e.Library + " is a build of ONNX Runtime that cannot load the CUDA provider; " +
			"use a GPU build, or a CPU build of the provider's version that loads providers (Microsoft's own, such as " +
			"onnxruntime-node's) with libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so beside it, " +
			"or run on the CPU"
	case strings.Contains(msg, "providers_shared"):
		return "the library " + e.Library + " is a CPU-only build of ONNX Runtime (it has no " +
			"libonnxruntime_providers_shared.so / libonnxruntime_providers_cuda.so next to it); " + install
	case strings.Contains(msg, "providers_cuda") && strings.Contains(msg, "cannot open shared object file"):
		return "the CUDA provider is there but a library it needs is not on the loader path: add the CUDA runtime, " +
			"cuBLAS, cuRAND and cuDNN of its CUDA version to LD_LIBRARY_PATH (`ldd libonnxruntime_providers_cuda.so` " +
			"lists what is missing), or run on the CPU"
	case strings.Contains(msg, "driver version is insufficient"), strings.Contains(msg, "no CUDA-capable device"),
		strings.Contains(msg, "invalid device ordinal"):
		return "the CUDA provider loaded but found no usable GPU: no NVIDIA driver, a driver older than the " +
			"provider's CUDA version (nvidia-smi shows the newest CUDA it supports), or no device with this number; " +
			"or run on the CPU"
	}
	return install
}

// Unwrap returns ErrCUDAUnavailable and ONNX Runtime's error.
func (e *CUDAError) Unwrap() []error { return []error{ErrCUDAUnavailable, e.Cause} }

// Session is a loaded score network: one ONNX Runtime session shared by any
// number of Scorers. Session is safe for concurrent use; Close is idempotent
// and waits for forward passes in flight.
type Session struct {
	env      *Env
	path     string
	graph    *GraphInfo
	n        int
	provider string
	fellBack error
	// guard is set when CUDA was asked for: the session then puts Go's
	// signal handlers back after it is set up and after every forward
	// pass, where a CUDA library replaced them (sigguard_unix.go).
	guard    bool
	sigMu    sync.Mutex
	restored []syscall.Signal

	inputNames, outputNames []string

	mu      sync.RWMutex // held for reading during Run, for writing by Close
	closed  bool
	ort     *ort.DynamicAdvancedSession
	runners map[*runner]struct{} // live runners, whose IoBindings die with the session
}

// Source is a model file for ONNX Runtime: its bytes (Data), or, when Data is
// nil, the file at Path, which ONNX Runtime reads itself (models whose weights
// live in external data files). Path names the file in messages either way.
// Graph, when not nil, is the file's graph as Scan read it, so that the file
// is not scanned twice.
type Source struct {
	Path  string
	Data  []byte
	Graph *GraphInfo
}

// Open loads the score network of the model directory dir described by m,
// checking the graph against the contract and against m (vocabulary
// dimension N = m.N(), file size when recorded).
func Open(dir string, m *manifest.Manifest, opts ...Option) (*Session, error) {
	path := filepath.Join(dir, m.ONNX.File)
	if m.ONNX.Size > 0 {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if st.Size() != m.ONNX.Size {
			return nil, &GraphError{Err: ErrNotONNX, Path: path, Detail: fmt.Sprintf(
				"%d bytes, but sedd.json records %d (truncated or replaced file?)", st.Size(), m.ONNX.Size)}
		}
	}
	return OpenFile(path, m.N(), opts...)
}

// OpenFile loads the score network at path, whose vocabulary dimension must
// be n; see OpenSource.
func OpenFile(path string, n int, opts ...Option) (*Session, error) {
	return OpenSource(Source{Path: path}, n, opts...)
}

// OpenSource loads the score network src, whose vocabulary dimension must be
// n. Before ONNX Runtime sees the file, its graph is read (Scan) and files
// that are not ONNX, are truncated, have inputs or outputs other than the
// contract's, or contain empty node inputs known to crash ONNX Runtime are
// refused.
func OpenSource(src Source, n int, opts ...Option) (*Session, error) {
	if n <= 0 {
		return nil, fmt.Errorf("runtime: vocabulary dimension %d: must be > 0", n)
	}
	inputs := []string{InputIndices, InputSigma}
	if src.Graph == nil {
		g, err := scanSource(src)
		if err != nil {
			return nil, err
		}
		src.Graph = g
	}
	if HasRows(src.Graph) {
		inputs = append(inputs, InputRows)
	}
	s, err := openSession(src, n, inputs, []string{OutputLogScore, OutputLSE},
		func(g *GraphInfo) error { return CheckScoreGraph(g, n) }, opts)
	if err != nil {
		return nil, err
	}
	if err := s.probeStates(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// probeStates checks the vocabulary dimension of a graph that does not record
// it (a dynamic or unknown last axis of log_score) with one forward pass of
// batch 1, length 1; otherwise a wrong N would only show as a failed forward
// pass of the first Score call. Graphs with a static N were checked by
// CheckScoreGraph and are not run.
func (s *Session) probeStates() error {
	rows := s.Rows()
	for _, v := range s.graph.Outputs {
		if v.Name == OutputLogScore && len(v.Dims) > 0 && v.Dims[len(v.Dims)-1] >= 0 {
			return nil
		}
	}
	idx, err := ort.NewTensor(ort.NewShape(1, 1), []int64{0})
	if err != nil {
		return fmt.Errorf("runtime: probe tensors: %w", err)
	}
	defer idx.Destroy()
	sig, err := ort.NewTensor(ort.NewShape(1), []float32{1})
	if err != nil {
		return fmt.Errorf("runtime: probe tensors: %w", err)
	}
	defer sig.Destroy()
	ins := []ort.Value{idx, sig}
	want := [][]int64{{1, 1, int64(s.n)}, {1, 1}}
	if rows {
		r, err := ort.NewTensor(ort.NewShape(1), []int64{0})
		if err != nil {
			return fmt.Errorf("runtime: probe tensors: %w", err)
		}
		defer r.Destroy()
		ins = append(ins, r)
		want = [][]int64{{1, int64(s.n)}, {1}}
	}
	outs := []ort.Value{nil, nil}
	err = s.ort.Run(ins, outs)
	s.repairSignals()
	for _, o := range outs {
		if o != nil {
			defer o.Destroy()
		}
	}
	if err != nil {
		return fmt.Errorf("runtime: %s: %w: a forward pass of one token fails: %w", s.path, ErrModelLoad, err)
	}
	for i, o := range outs {
		if got := o.GetShape(); !slices.Equal(got, want[i]) {
			return &GraphError{Err: ErrGraphMismatch, Path: s.path, Detail: fmt.Sprintf(
				"output %q has shape %v for one token, want %v (the manifest implies N = %d)",
				s.outputNames[i], got, want[i], s.n)}
		}
	}
	return nil
}

// openSession scans and checks the model file, then creates the ONNX Runtime
// session with the given input and output names.
func openSession(src Source, n int, inputs, outputs []string, check func(*GraphInfo) error, opts []Option) (*Session, error) {
	c := config{intraOp: goruntime.NumCPU(), interOp: 1}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	path := src.Path
	g := src.Graph
	if g == nil {
		var err error
		if g, err = scanSource(src); err != nil {
			return nil, err
		}
	}
	if err := checkEmptyInputs(g); err != nil {
		err.(*GraphError).Path = path
		return nil, err
	}
	if err := check(g); err != nil {
		err.(*GraphError).Path = path
		return nil, err
	}
	env, err := Acquire(c.library)
	if err != nil {
		return nil, err
	}
	s := &Session{env: env, path: path, graph: g, n: n, provider: "cpu",
		inputNames: inputs, outputNames: outputs, runners: map[*runner]struct{}{}}
	if c.cuda {
		s.guard = recordGoSignals()
	}
	so, err := s.sessionOptions(&c)
	if err != nil {
		s.repairSignals()
		env.Release()
		return nil, err
	}
	if src.Data != nil {
		s.ort, err = ort.NewDynamicAdvancedSessionWithONNXData(src.Data, inputs, outputs, so)
	} else {
		s.ort, err = ort.NewDynamicAdvancedSession(path, inputs, outputs, so)
	}
	so.Destroy() // before any Release: the last Release unloads the library
	s.repairSignals()
	if err != nil {
		env.Release()
		return nil, fmt.Errorf("runtime: %s: %w: %w", path, ErrModelLoad, err)
	}
	// Creating a session copies the weights and optimizes the graph in
	// temporaries ONNX Runtime frees at once, but glibc keeps those pages:
	// at the sedd-small shape the process stayed 1.3 GB above what the
	// session holds for as long as it lived. Give them back now.
	giveBackMemory()
	return s, nil
}

// sessionOptions builds the ONNX Runtime options, setting up CUDA when asked
// and falling back to the CPU when allowed.
func (s *Session) sessionOptions(c *config) (*ort.SessionOptions, error) {
	so, err := cpuOptions(c)
	if err != nil || !c.cuda {
		return so, err
	}
	if cerr := appendCUDA(so, c.deviceID); cerr != nil {
		e := &CUDAError{DeviceID: c.deviceID, Library: s.env.Library().Path, Cause: cerr}
		so.Destroy()
		if !c.fallback {
			return nil, e
		}
		s.fellBack = e
		return cpuOptions(c)
	}
	s.provider = "cuda:" + strconv.Itoa(c.deviceID)
	return so, nil
}

func cpuOptions(c *config) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("runtime: session options: %w", err)
	}
	if err := so.SetIntraOpNumThreads(c.intraOp); err != nil {
		so.Destroy()
		return nil, fmt.Errorf("runtime: intra-op threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(c.interOp); err != nil {
		so.Destroy()
		return nil, fmt.Errorf("runtime: inter-op threads: %w", err)
	}
	if c.saveOptimized != "" {
		err := so.SetOptimizedModelFilePath(c.saveOptimized)
		for _, kv := range [][2]string{
			{"session.optimized_model_external_initializers_file_name", filepath.Base(c.saveOptimized) + ".data"},
			{"session.optimized_model_external_initializers_min_size_in_bytes", "1024"},
		} {
			if err == nil {
				err = so.AddSessionConfigEntry(kv[0], kv[1])
			}
		}
		if err != nil {
			so.Destroy()
			return nil, fmt.Errorf("runtime: saving the optimized graph: %w", err)
		}
	}
	if c.preoptimized {
		if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("runtime: graph optimization level: %w", err)
		}
	}
	return so, nil
}

// cudaOptions are the CUDA provider's options for a device. TF32 is off:
// ONNX Runtime turns it on by default (since 1.18), which rounds the inputs
// of float32 matrix products to 10 bits of mantissa on Ampere and newer GPUs,
// about 1e-3 relative, ten times the float32 tolerance a model's golden
// outputs are checked with. With it off the network computes in float32 on
// the GPU as on the CPU.
func cudaOptions(deviceID int) map[string]string {
	return map[string]string{"device_id": strconv.Itoa(deviceID), "use_tf32": "0"}
}

func appendCUDA(so *ort.SessionOptions, deviceID int) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer co.Destroy()
	if err := co.Update(cudaOptions(deviceID)); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(co)
}

// scanSource reads the graph of src (its bytes, or the file at its path).
func scanSource(src Source) (*GraphInfo, error) {
	if src.Data != nil {
		g, err := Scan(bytes.NewReader(src.Data), int64(len(src.Data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Path, err)
		}
		return g, nil
	}
	return ScanONNX(src.Path)
}

// HasRows reports whether a score network takes the rows input (its outputs
// are then [rows, N] and [rows]).
func HasRows(g *GraphInfo) bool {
	for _, v := range g.Inputs {
		if v.Name == InputRows {
			return true
		}
	}
	return false
}

// CheckScoreGraph checks a scanned graph against the score-network contract:
// inputs exactly indices (int64, [batch, length]) and sigma (float32,
// [batch]); outputs log_score (float32, [batch, length, N]) and log_score_lse
// (float32, [batch, length]); or, with the third input rows (int64, [rows]),
// outputs log_score [rows, N] and log_score_lse [rows]; batch and length
// dynamic; N equal to n when the graph records it. Errors wrap
// ErrGraphMismatch.
func CheckScoreGraph(g *GraphInfo, n int) error {
	type want struct {
		name string
		elem int32
		rank int
	}
	check := func(kind string, have []ValueInfo, wants []want, exact bool) error {
		byName := map[string]ValueInfo{}
		var names []string
		for _, v := range have {
			byName[v.Name] = v
			names = append(names, v.Name)
		}
		for _, w := range wants {
			v, ok := byName[w.name]
			if !ok {
				return mismatch("%s %q is missing (the graph has %s %q)", kind, w.name, kind+"s", names)
			}
			if v.ElemType != w.elem {
				return mismatch("%s %q has element type %s, want %s", kind, w.name, elemName(v.ElemType), elemName(w.elem))
			}
			if v.Dims != nil && len(v.Dims) != w.rank {
				return mismatch("%s %q has rank %d (shape %v), want %d", kind, w.name, len(v.Dims), v.Dims, w.rank)
			}
		}
		if exact && len(have) != len(wants) {
			return mismatch("the graph has %ss %q; the contract has exactly %d", kind, names, len(wants))
		}
		return nil
	}
	inputs := []want{{InputIndices, onnxInt64, 2}, {InputSigma, onnxFloat, 1}}
	outputs := []want{{OutputLogScore, onnxFloat, 3}, {OutputLSE, onnxFloat, 2}}
	if HasRows(g) {
		inputs = append(inputs, want{InputRows, onnxInt64, 1})
		outputs = []want{{OutputLogScore, onnxFloat, 2}, {OutputLSE, onnxFloat, 1}}
	}
	if err := check("input", g.Inputs, inputs, true); err != nil {
		return err
	}
	if err := check("output", g.Outputs, outputs, false); err != nil {
		return err
	}
	for _, v := range g.Inputs {
		if v.Name == InputIndices && v.Dims != nil && (v.Dims[0] >= 0 || v.Dims[1] >= 0) {
			return mismatch("input %q has static shape %v; batch and length must be dynamic axes", v.Name, v.Dims)
		}
	}
	for _, v := range g.Outputs {
		if v.Name == OutputLogScore && len(v.Dims) > 0 {
			if last := v.Dims[len(v.Dims)-1]; last >= 0 && last != int64(n) {
				return mismatch("output %q has vocabulary dimension %d, but the manifest implies N = %d", v.Name, last, n)
			}
		}
	}
	return nil
}

func mismatch(format string, args ...any) error {
	return &GraphError{Err: ErrGraphMismatch, Detail: fmt.Sprintf(format, args...)}
}

func elemName(t int32) string {
	switch t {
	case onnxFloat:
		return "float32"
	case onnxInt64:
		return "int64"
	case 0:
		return "unknown"
	}
	return ort.TensorElementDataType(t).String()
}

// N returns the vocabulary dimension of the score network.
func (s *Session) N() int { return s.n }

// Rows reports whether the network takes the rows input, so that a Scorer
// can run its output head on some positions only (Scorer.ScoreRows).
func (s *Session) Rows() bool { return len(s.inputNames) == 3 }

// Path returns the model file.
func (s *Session) Path() string { return s.path }

// Graph returns what ScanONNX read from the model file.
func (s *Session) Graph() *GraphInfo { return s.graph }

// Provider returns where forward passes run: "cpu" or "cuda:N".
func (s *Session) Provider() string { return s.provider }

// FellBack returns the *CUDAError that made a session asked for CUDA run on
// the CPU (WithCPUFallback), or nil.
func (s *Session) FellBack() error { return s.fellBack }

// repairSignals puts the Go runtime's signal handlers back where C code
// replaced them since the session began to be set up, on a session asked to
// run on CUDA, and remembers which (RestoredSignals).
func (s *Session) repairSignals() {
	if !s.guard {
		return
	}
	fixed := repairGoSignals()
	if len(fixed) == 0 {
		return
	}
	s.sigMu.Lock()
	for _, sig := range fixed {
		if !slices.Contains(s.restored, sig) {
			s.restored = append(s.restored, sig)
		}
	}
	s.sigMu.Unlock()
}

// RestoredSignals returns the signals whose Go handler a C library (CUDA's)
// replaced while this session was set up or ran, and which were given back
// to Go; nil when nothing was replaced or CUDA was not asked for.
func (s *Session) RestoredSignals() []string {
	s.sigMu.Lock()
	defer s.sigMu.Unlock()
	var names []string
	for _, sig := range s.restored {
		names = append(names, sig.String())
	}
	return names
}

// Library returns the ONNX Runtime library in use.
func (s *Session) Library() Library { return s.env.Library() }

// Version returns the ONNX Runtime version string.
func (s *Session) Version() string { return s.env.Version() }

// Close releases the ONNX Runtime session and this session's reference to
// the environment. It waits for forward passes in flight; Scorers created
// from the session return ErrClosed afterwards. Calls after the first return
// nil.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for r := range s.runners {
		r.dropBinding()
	}
	err := s.ort.Destroy()
	s.ort = nil
	s.mu.Unlock()
	if rerr := s.env.Release(); err == nil {
		err = rerr
	}
	giveBackMemory()
	return err
}
