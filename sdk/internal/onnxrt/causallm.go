package onnxrt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/sedd-go/sedd/sdk/internal/manifest"
)

// Names of a causal-lm evaluator's input and output (docs/ONNX-CONTRACT.md).
const (
	InputIDs     = "input_ids"
	OutputLogits = "logits"
)

// CausalLM is a loaded autoregressive evaluator (a "causal-lm" model
// directory), used to measure generative perplexity: next-token logits for
// every position of a batch of token sequences. It is safe for concurrent
// use; Close is idempotent and waits for forward passes in flight.
type CausalLM struct {
	s *Session
}

// OpenCausalLM loads the evaluator of the model directory dir described by e,
// checking the graph against the contract (input_ids int64 [batch, length] →
// logits float32 [batch, length, e.VocabSize]) and the file size recorded in e.
func OpenCausalLM(dir string, e *manifest.Evaluator, opts ...Option) (*CausalLM, error) {
	path := filepath.Join(dir, e.ONNX.File)
	if e.ONNX.Size > 0 {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if st.Size() != e.ONNX.Size {
			return nil, &GraphError{Err: ErrNotONNX, Path: path, Detail: fmt.Sprintf(
				"%d bytes, but sedd.json records %d (truncated or replaced file?)", st.Size(), e.ONNX.Size)}
		}
	}
	return OpenCausalLMFile(path, e.VocabSize, opts...)
}

// OpenCausalLMFile loads the evaluator at path, whose logits have vocab
// entries per position; see OpenCausalLMSource.
func OpenCausalLMFile(path string, vocab int, opts ...Option) (*CausalLM, error) {
	return OpenCausalLMSource(Source{Path: path}, vocab, opts...)
}

// OpenCausalLMSource loads the evaluator src, whose logits have vocab entries
// per position. The file is checked as in OpenSource.
func OpenCausalLMSource(src Source, vocab int, opts ...Option) (*CausalLM, error) {
	if vocab <= 0 {
		return nil, fmt.Errorf("runtime: vocabulary size %d: must be > 0", vocab)
	}
	s, err := openSession(src, vocab, []string{InputIDs}, []string{OutputLogits},
		func(g *GraphInfo) error { return CheckCausalLMGraph(g, vocab) }, opts)
	if err != nil {
		return nil, err
	}
	return &CausalLM{s: s}, nil
}

// CheckCausalLMGraph checks a scanned graph against the evaluator contract:
// exactly one input, input_ids (int64, [batch, length], both dynamic), and an
// output logits (float32, [batch, length, vocab]) whose last dimension, when
// recorded, equals vocab. Errors wrap ErrGraphMismatch.
func CheckCausalLMGraph(g *GraphInfo, vocab int) error {
	if len(g.Inputs) != 1 || g.Inputs[0].Name != InputIDs {
		return mismatch("the graph's inputs are %v; an evaluator has exactly %q", names(g.Inputs), InputIDs)
	}
	in := g.Inputs[0]
	if in.ElemType != onnxInt64 {
		return mismatch("input %q has element type %s, want int64", InputIDs, elemName(in.ElemType))
	}
	if in.Dims != nil && (len(in.Dims) != 2 || in.Dims[0] >= 0 || in.Dims[1] >= 0) {
		return mismatch("input %q has shape %v; want [batch, length] with both axes dynamic", InputIDs, in.Dims)
	}
	for _, out := range g.Outputs {
		if out.Name != OutputLogits {
			continue
		}
		if out.ElemType != onnxFloat {
			return mismatch("output %q has element type %s, want float32", OutputLogits, elemName(out.ElemType))
		}
		if out.Dims != nil && len(out.Dims) != 3 {
			return mismatch("output %q has rank %d (shape %v), want 3", OutputLogits, len(out.Dims), out.Dims)
		}
		if out.Dims != nil && out.Dims[2] >= 0 && out.Dims[2] != int64(vocab) {
			return mismatch("output %q has vocabulary dimension %d, but the manifest says %d", OutputLogits, out.Dims[2], vocab)
		}
		return nil
	}
	return mismatch("output %q is missing (the graph has outputs %v)", OutputLogits, names(g.Outputs))
}

func names(vs []ValueInfo) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

// VocabSize returns the last dimension of the logits.
func (m *CausalLM) VocabSize() int { return m.s.n }

// Provider returns where forward passes run: "cpu" or "cuda:N".
func (m *CausalLM) Provider() string { return m.s.Provider() }

// FellBack returns the *CUDAError that made an evaluator asked for CUDA run
// on the CPU (WithCPUFallback), or nil.
func (m *CausalLM) FellBack() error { return m.s.FellBack() }

// Library returns the ONNX Runtime library in use.
func (m *CausalLM) Library() Library { return m.s.Library() }

// Close releases the ONNX Runtime session; see Session.Close.
func (m *CausalLM) Close() error { return m.s.Close() }

// NewRunner returns a LogitsRunner on m. Close it when done.
func (m *CausalLM) NewRunner() (*LogitsRunner, error) {
	r, err := m.s.newRunner()
	if err != nil {
		return nil, err
	}
	return &LogitsRunner{r: r, vocab: m.s.n}, nil
}

// LogitsRunner runs forward passes of a CausalLM with tensors it owns, reused
// across calls of the same shape like a Scorer's. It is not safe for
// concurrent use: give each goroutine its own.
type LogitsRunner struct {
	r     *runner
	vocab int

	batch, length int
	idsBuf        []int64
	logitsBuf     []float32
	ids           *ort.Tensor[int64]
	logits        *ort.Tensor[float32]
}

// Logits returns the next-token logits for ids (batch*length token ids in
// [0, VocabSize()), row-major): batch*length*VocabSize() values, row-major,
// where entry [b][i] predicts token i+1 of row b. The slice belongs to the
// runner and stays valid until its next call of Logits or Close.
// Cancellation and allocation behave as for Scorer.Score.
func (lr *LogitsRunner) Logits(ctx context.Context, ids []int64, batch, length int) ([]float32, error) {
	if lr.r.closed {
		return nil, fmt.Errorf("runtime: logits runner: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkShape(batch, length, lr.vocab); err != nil {
		return nil, err
	}
	if len(ids) != batch*length {
		return nil, fmt.Errorf("runtime: %w: %d token ids for batch %d × length %d", ErrInput, len(ids), batch, length)
	}
	if err := checkIDs(ids, lr.vocab); err != nil {
		return nil, err
	}
	if batch != lr.batch || length != lr.length {
		if err := lr.reshape(batch, length); err != nil {
			return nil, err
		}
	}
	copy(lr.ids.GetData(), ids)
	if err := lr.r.forward(ctx); err != nil {
		return nil, err
	}
	return lr.logits.GetData(), nil
}

func (lr *LogitsRunner) reshape(batch, length int) error {
	lr.destroyTensors()
	rows := batch * length
	lr.idsBuf = growInt64(lr.idsBuf, rows)
	lr.logitsBuf = growFloat32(lr.logitsBuf, rows*lr.vocab)
	b, l := int64(batch), int64(length)
	var err error
	if lr.ids, err = ort.NewTensor(ort.NewShape(b, l), lr.idsBuf); err == nil {
		lr.logits, err = ort.NewTensor(ort.NewShape(b, l, int64(lr.vocab)), lr.logitsBuf)
	}
	if err != nil {
		lr.destroyTensors()
		return fmt.Errorf("runtime: tensors for batch %d, length %d: %w", batch, length, err)
	}
	lr.r.setValues([]ort.Value{lr.ids}, []ort.Value{lr.logits})
	lr.batch, lr.length = batch, length
	return nil
}

func (lr *LogitsRunner) destroyTensors() {
	if lr.ids != nil {
		lr.ids.Destroy()
	}
	if lr.logits != nil {
		lr.logits.Destroy()
	}
	lr.ids, lr.logits = nil, nil
	lr.batch, lr.length = 0, 0
}

// Close releases the tensors, the run options and the runner's reference to
// the environment. Calls after the first return nil.
func (lr *LogitsRunner) Close() error {
	return lr.r.close(lr.destroyTensors)
}
