package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/config"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/internal/pool"
	"github.com/sedd-go/sedd/sdk/tokenizer"
)

// Model is an opened SEDD model: its manifest (sedd.json), tokenizer and
// score network (docs/ONNX-CONTRACT.md). A Model is safe for concurrent use by
// many goroutines; each call borrows ONNX Runtime tensors of its own, which
// are kept for the next call.
type Model struct {
	dir modeldir.Dir
	raw []byte // sedd.json as read
	man *manifest.Manifest
	tok *tokenizer.Tokenizer
	// tokDigest is the sha256 of tokenizer.json's JSON value (Info).
	tokDigest string
	sess      *onnxrt.Session
	choice    graphChoice // the graph sess runs
	cache     string      // how it was loaded (Info.GraphCache)
	graph     diffusion.Graph
	noise     diffusion.Noise
	opts      config.Open
	log       *slog.Logger

	// closed is set by Close; calls check it before every network
	// evaluation, so that Close stops them within one step.
	closed atomic.Bool
	// mu guards inflight and released. A call counts itself in flight for
	// its whole duration without holding mu, so that calls made from inside
	// another call's callback never wait for each other or for Close.
	mu       sync.Mutex
	inflight int
	released bool
	scorers  pool.Pool[*onnxrt.Scorer]
	// batcher packs concurrent calls into shared passes (WithBatching);
	// passes counts the forward passes (BatchStats).
	batcher *batcher
	passes  passStats
}

// Open loads the model directory dir (written by export/export.py): it reads
// and validates sedd.json, loads the tokenizer and checks its vocabulary
// against the manifest, checks model.onnx (size, sha256, graph inputs and
// outputs) and creates the ONNX Runtime session. Every file must be a regular
// file within its size limit; nothing is read before that is checked. Errors
// match ErrBadModel (with the file and the field at fault),
// ErrRuntimeUnavailable, ErrCUDAUnavailable or ErrBadRequest (a bad option).
func Open(dir string, opts ...Option) (_ *Model, err error) {
	defer observe(&err)
	o, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return nil, withKind(ErrBadModel, fmt.Errorf("open model %s: %w (give the directory holding sedd.json and model.onnx)", dir, err))
	case !st.IsDir():
		return nil, withKind(ErrBadModel, fmt.Errorf("open model %s: not a directory (give the model's directory, holding sedd.json and model.onnx)", dir))
	}
	return open(modeldir.OnDisk(dir), o)
}

// OpenFS loads a model directory held in fsys, such as a model embedded in
// the program with go:embed (use fs.Sub to point at its directory); name says
// in messages and in Info which model it is. It checks what Open checks. The
// network is read into memory and handed to ONNX Runtime from there, so a
// model whose weights live in external data files (over 2 GB) needs Open.
func OpenFS(fsys fs.FS, name string, opts ...Option) (_ *Model, err error) {
	defer observe(&err)
	o, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	if fsys == nil {
		return nil, fmt.Errorf("%w: nil fs.FS", ErrBadRequest)
	}
	if name == "" {
		name = "model"
	}
	return open(modeldir.FromFS(fsys, name), o)
}

// open reads the model directory d, each file once.
func open(d modeldir.Dir, o config.Open) (*Model, error) {
	fail := func(err error) (*Model, error) {
		return nil, classifyOpen(fmt.Errorf("open model %s: %w", d, err))
	}
	raw, err := d.ReadFile(manifest.FileName, modeldir.MaxManifest)
	if err != nil {
		return fail(err)
	}
	man, err := manifest.Parse(raw)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", manifest.FileName, err))
	}
	if man.Kind != "" && man.Kind != manifest.KindSEDD {
		return fail(fmt.Errorf("%w: sedd.json describes a %q model, not a SEDD score network", manifest.ErrKind, man.Kind))
	}
	m := &Model{dir: d, raw: raw, man: man, opts: o, log: o.Logger}
	if m.graph, m.noise, err = man.Diffusion(); err != nil {
		return fail(err)
	}
	tokData, err := d.ReadVerified(man.Tokenizer.File, modeldir.MaxTokenizer, man.Tokenizer.SHA256)
	if err != nil {
		return fail(err)
	}
	if m.tok, err = tokenizer.Parse(tokData, man.Tokenizer.File); err != nil {
		return fail(err)
	}
	if m.tokDigest, err = modeldir.JSONDigest(tokData); err != nil {
		return fail(fmt.Errorf("%s: %w: %v", man.Tokenizer.File, tokenizer.ErrFormat, err))
	}
	if v := m.tok.VocabSize(); v != man.Tokens {
		return fail(fmt.Errorf("%w: %s has %d tokens but sedd.json says tokens=%d", manifest.ErrMismatch, man.Tokenizer.File, v, man.Tokens))
	}
	if m.choice, err = choose(man, o.Precision); err != nil {
		return nil, err
	}
	if m.sess, m.cache, err = openNetwork(d, man, m.choice, o, m.log); err != nil {
		return fail(err)
	}
	if fb := m.sess.FellBack(); fb != nil {
		m.log.Warn("running on the CPU", "reason", fb.Error())
	}
	if o.BatchRows > 0 {
		m.batcher = newBatcher(m)
	}
	return m, nil
}

// network checks an ONNX file of the model (model.onnx or a variant's)
// against what the manifest records (size, sha256) and returns it for ONNX
// Runtime: its bytes, read once, or its path when ONNX Runtime must read it
// itself (weights in external data files).
func network(d modeldir.Dir, f manifest.ONNX) (onnxrt.Source, error) {
	if f.ExternalData {
		path, err := d.HashFile(f.File, f.Size, "")
		return onnxrt.Source{Path: path}, err
	}
	data, err := d.Checked(f.File, f.Size, f.SHA256)
	if err != nil {
		return onnxrt.Source{}, err
	}
	if len(data) == 0 {
		return onnxrt.Source{}, &onnxrt.GraphError{Err: onnxrt.ErrNotONNX, Path: f.File, Detail: "empty file"}
	}
	return onnxrt.Source{Path: f.File, Data: data}, nil
}

// classifyOpen gives an error of Open its kind: the library or the device
// when they are at fault, else the model.
func classifyOpen(err error) error {
	if hasKind(err) {
		return err
	}
	return withKind(ErrBadModel, err)
}

// Close releases the ONNX Runtime session, its tensors and its threads. It
// does not wait: calls made afterwards fail with ErrClosed at once, and calls
// in flight stop before their next network evaluation with ErrClosed; the
// last of them to return releases the session (Close itself does when none
// is in flight). So Close may be called from anywhere, a callback of the
// Model included, and never deadlocks. Close is idempotent.
func (m *Model) Close() (err error) {
	defer observe(&err)
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.mu.Lock()
	idle := m.inflight == 0
	m.mu.Unlock()
	if idle {
		return m.release()
	}
	return nil
}

// release frees the session once; it runs when the model is closed and no
// call is in flight.
func (m *Model) release() error {
	m.mu.Lock()
	if m.released {
		m.mu.Unlock()
		return nil
	}
	m.released = true
	m.mu.Unlock()
	var berr error
	if m.batcher != nil {
		berr = m.batcher.close()
	}
	return errors.Join(berr, m.scorers.Close(), m.sess.Close())
}

// enter counts a call in flight; it fails once the model is closed.
func (m *Model) enter() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() || m.released {
		return ErrClosed
	}
	m.inflight++
	return nil
}

// leave ends a call; the last call after Close releases the session.
func (m *Model) leave() {
	m.mu.Lock()
	m.inflight--
	last := m.inflight == 0 && m.closed.Load()
	m.mu.Unlock()
	if last {
		if err := m.release(); err != nil {
			m.log.Warn("releasing the closed model", "error", err.Error())
		}
	}
}

// Info describes an opened model and where it runs. It is plain data, with
// JSON names, for printing and logging.
type Info struct {
	// Name is the model's name in sedd.json; Dir its directory, or the name
	// given to OpenFS for a model that is not on disk.
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Graph is "absorb" or "uniform"; Noise the schedule in words, such as
	// "loglinear(eps=0.001)".
	Graph string `json:"graph"`
	Noise string `json:"noise"`
	// Tokens is the vocabulary size, States the states of one position
	// (Tokens+1 with the mask of the absorbing graph), MaskID the mask's id
	// in sampled tokens (-1 for the uniform graph), Length the trained
	// sequence length.
	Tokens int `json:"tokens"`
	States int `json:"states"`
	MaskID int `json:"mask_id"`
	Length int `json:"length"`
	// The network: parameters and DDiT hyper-parameters (0 when sedd.json
	// does not record them).
	Params       int64 `json:"params"`
	Hidden       int   `json:"hidden_size"`
	Blocks       int   `json:"n_blocks"`
	Heads        int   `json:"n_heads"`
	CondDim      int   `json:"cond_dim"`
	ScaleBySigma bool  `json:"scale_by_sigma"`
	// TimeIndependent: the network ignores its time input but for the
	// scale_by_sigma term (sedd.json's model.time_independent), so sampling
	// skips the network call of a step in which no token moved.
	TimeIndependent bool `json:"time_independent"`
	// Tokenizer is the tokenizer's kind; SpecialTokens its special tokens;
	// EOS the literal text of its end-of-text token ("" when it has none),
	// which Evaluate appends to each document and SplitDocuments splits at;
	// TokenizerDigest the sha256 of tokenizer.json's JSON value (equal for
	// files that differ only in whitespace), to tell whether two models
	// share a tokenizer.
	Tokenizer       string         `json:"tokenizer"`
	SpecialTokens   map[string]int `json:"special_tokens"`
	EOS             string         `json:"eos"`
	TokenizerDigest string         `json:"tokenizer_digest"`
	// ONNXFile and ONNXSize describe the network file that runs: model.onnx
	// or a variant's.
	ONNXFile string `json:"onnx_file"`
	ONNXSize int64  `json:"onnx_size"`
	// Variant names the graph that runs ("reference" for model.onnx, else a
	// variant of sedd.json such as "fp32-opt" or "int8"), Precision its
	// arithmetic ("fp32" or "int8"), VariantReason why it was chosen;
	// Variants lists every graph of the model, model.onnx first.
	Variant       string        `json:"variant"`
	Precision     string        `json:"precision"`
	VariantReason string        `json:"variant_reason"`
	Variants      []VariantInfo `json:"variants"`
	// GraphCache says how the graph was loaded: "hit" (ONNX Runtime's
	// optimized copy from the cache, see WithCacheDir), "built" (loaded from
	// the model directory and its optimized copy cached), or "off: " and why
	// the cache was not used.
	GraphCache string `json:"graph_cache"`
	// Format is sedd.json's format version; Source says in words what the
	// model was exported from; ExportedWith the torch and onnx versions of
	// the exporter (when recorded).
	Format       int    `json:"format"`
	Source       string `json:"source"`
	ExportedWith string `json:"exported_with"`
	// Runtime: the ONNX Runtime version, the library file, how it was found
	// and why, the execution provider ("cpu" or "cuda:N"), whether a CUDA
	// request fell back to the CPU, and the intra-op threads.
	// RestoredSignals names the signals whose Go handler a CUDA library
	// replaced (onnxruntime_go issue 140) and the SDK gave back to Go, so
	// far: set up, and every forward pass on CUDA, repair them.
	ORTVersion      string   `json:"onnxruntime_version"`
	LibraryPath     string   `json:"library_path"`
	LibrarySource   string   `json:"library_source"`
	LibraryReason   string   `json:"library_reason"`
	Provider        string   `json:"provider"`
	FellBackToCPU   bool     `json:"fell_back_to_cpu"`
	RestoredSignals []string `json:"restored_signals,omitempty"`
	Threads         int      `json:"threads"`
	// Manifest is sedd.json as read.
	Manifest json.RawMessage `json:"manifest"`
}

// Info reports the model's manifest, the ONNX Runtime library in use and the
// execution provider. It works after Close too.
func (m *Model) Info() Info {
	man := m.man
	noise := man.Noise.Type
	switch man.Noise.Type {
	case manifest.NoiseLogLinear:
		noise = fmt.Sprintf("loglinear(eps=%g)", man.Noise.Eps)
	case manifest.NoiseGeometric:
		noise = fmt.Sprintf("geometric(sigma_min=%g, sigma_max=%g)", man.Noise.SigmaMin, man.Noise.SigmaMax)
	}
	mask, _ := man.MaskID()
	eos, _ := m.eosText()
	lib := m.sess.Library()
	return Info{
		Name: man.Name, Dir: m.dir.String(), Graph: man.Graph, Noise: noise,
		Tokens: man.Tokens, States: man.N(), MaskID: mask, Length: man.Length,
		Params: man.Model.Params, Hidden: man.Model.HiddenSize, Blocks: man.Model.NBlocks,
		Heads: man.Model.NHeads, CondDim: man.Model.CondDim, ScaleBySigma: man.Model.ScaleBySigma,
		TimeIndependent: man.Model.TimeIndependent,
		Tokenizer:       man.Tokenizer.Kind, SpecialTokens: man.Tokenizer.SpecialTokens, EOS: eos, TokenizerDigest: m.tokDigest,
		ONNXFile: m.choice.onnx.File, ONNXSize: m.choice.onnx.Size,
		Variant: m.choice.name, Precision: m.choice.precision, VariantReason: m.choice.reason,
		Variants: variantInfos(man, m.choice.name), GraphCache: m.cache,
		Format: man.Format, Source: sourceText(man.Source), ExportedWith: exporterText(man.Exporter),
		ORTVersion: m.sess.Version(), LibraryPath: lib.Path, LibrarySource: lib.Source, LibraryReason: lib.Reason,
		Provider: m.sess.Provider(), FellBackToCPU: m.sess.FellBack() != nil, RestoredSignals: m.sess.RestoredSignals(),
		Threads:  m.opts.Threads,
		Manifest: json.RawMessage(m.raw),
	}
}

// VariantInfo describes one graph of a model (Info.Variants).
type VariantInfo struct {
	// Name is "reference" for model.onnx, else the variant's name;
	// Precision "fp32" or "int8"; File and Size its file.
	Name      string `json:"name"`
	Precision string `json:"precision"`
	File      string `json:"file"`
	Size      int64  `json:"size"`
	// Tolerance is Verify's default tolerance for it (0: the manifest's
	// verify.tolerance), MaxRelErr and MeanKL what the exporter measured
	// against PyTorch on the golden cases (0 when not recorded).
	Tolerance float64 `json:"tolerance"`
	MaxRelErr float64 `json:"max_rel_err"`
	MeanKL    float64 `json:"mean_kl"`
	// Quality summarises its measured quality cost on held-out text, ""
	// when not measured; WithinLimits says whether that cost is within the
	// documented limits.
	Quality      string `json:"quality"`
	WithinLimits bool   `json:"within_limits"`
	// Running is true for the graph that runs.
	Running bool `json:"running"`
}

// variantInfos lists model.onnx and the variants.
func variantInfos(man *manifest.Manifest, running string) []VariantInfo {
	out := []VariantInfo{{Name: manifest.Reference, Precision: manifest.PrecisionFP32, File: man.ONNX.File,
		Size: man.ONNX.Size, Running: running == manifest.Reference}}
	if man.Verify != nil {
		out[0].Tolerance = man.Verify.Tolerance
	}
	for _, v := range man.Variants {
		vi := VariantInfo{Name: v.Name, Precision: v.Precision, File: v.ONNX.File, Size: v.ONNX.Size,
			Tolerance: v.Tolerance, MaxRelErr: v.MaxRelErr, MeanKL: v.MeanKL, Running: running == v.Name}
		if v.Quality != nil {
			vi.Quality, vi.WithinLimits = v.Quality.Summary, v.Quality.WithinLimits
			if vi.Quality == "" {
				vi.Quality = "measured"
			}
		}
		out = append(out, vi)
	}
	return out
}

// eosText returns the literal text of the tokenizer's end-of-text token, such
// as "<|endoftext|>", and whether there is one: the manifest names an EOS id
// below the model's token count and a special token with that id. When
// several special tokens share the id, the first in lexical order is
// returned.
func (m *Model) eosText() (string, bool) {
	id := m.man.Tokenizer.EOSID
	if id < 0 || id >= m.man.Tokens {
		return "", false
	}
	var names []string
	for name, sid := range m.man.Tokenizer.SpecialTokens {
		if sid == id && name != "" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", false
	}
	sort.Strings(names)
	return names[0], true
}

// sourceText summarises sedd.json's free-form "source" object in words.
func sourceText(raw json.RawMessage) string {
	var src struct {
		Kind  string  `json:"kind"`
		Path  *string `json:"path"`
		Shape string  `json:"shape"`
		Step  *int    `json:"step"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &src) != nil || src.Kind == "" {
		return "source not recorded"
	}
	s := "exported from " + src.Kind
	switch {
	case src.Path != nil && *src.Path != "":
		s += " " + *src.Path
	case src.Shape != "":
		s += " (" + src.Shape + ")"
	}
	if src.Step != nil {
		s += fmt.Sprintf(", step %d", *src.Step)
	}
	return s
}

// exporterText says which torch and onnx versions wrote the export, from
// sedd.json's free-form "exporter" object.
func exporterText(raw json.RawMessage) string {
	var ex map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &ex) != nil {
		return "not recorded"
	}
	var parts []string
	for _, k := range []string{"torch", "onnx", "exporter", "opset"} {
		if v, ok := ex[k]; ok && v != nil {
			parts = append(parts, fmt.Sprintf("%s %v", k, v))
		}
	}
	if len(parts) == 0 {
		return "not recorded"
	}
	return strings.Join(parts, ", ")
}

// Tokenize returns the token ids of text under the model's tokenizer, as
// Sample and Evaluate tokenize prompts and documents (no end-of-text token is
// added). It fails with ErrBadRequest for text that is not valid UTF-8.
func (m *Model) Tokenize(text string) (_ []int64, err error) {
	defer observe(&err)
	return m.encode("text", text)
}

// encode tokenizes text; what names it in errors.
func (m *Model) encode(what, text string) ([]int64, error) {
	ids, err := m.tok.Encode(text)
	if err != nil {
		return nil, withKind(ErrBadRequest, fmt.Errorf("%s: %w", what, err))
	}
	return ids, nil
}

// Decode returns the text of tokens, writing mask for each mask token (for
// example "_" to watch a sample denoise, or "" to leave masks out). Ids
// outside the vocabulary decode to "\uFFFD".
func (m *Model) Decode(tokens []int64, mask string) string {
	maskID := int64(-1)
	if id, ok := m.man.MaskID(); ok {
		maskID = int64(id)
	}
	var out []byte
	run := make([]int64, 0, len(tokens))
	flush := func() {
		if len(run) > 0 {
			s, err := m.tok.Decode(run)
			if err != nil {
				s = "\uFFFD"
			}
			out = append(out, s...)
			run = run[:0]
		}
	}
	for _, t := range tokens {
		switch {
		case t == maskID:
			flush()
			out = append(out, mask...)
		case t < 0 || t >= int64(m.man.Tokens):
			flush()
			out = append(out, "\uFFFD"...)
		default:
			run = append(run, t)
		}
	}
	flush()
	return string(out)
}
