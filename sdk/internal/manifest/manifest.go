// Package manifest reads and validates sedd.json, the manifest of an exported
// model directory (see docs/ONNX-CONTRACT.md). It is pure Go: it knows nothing
// about ONNX Runtime and can be used to inspect a model without loading it.
//
//	m, err := manifest.Load("models/sedd-small")
//	if errors.Is(err, manifest.ErrFormat) { /* written by a newer exporter */ }
//	fmt.Println(m.Graph, m.N())
//
// Two kinds of manifest exist: the score network of a SEDD model (Manifest,
// read by Parse and Load) and an autoregressive evaluator used for generative
// perplexity (Evaluator, "kind": "causal-lm", read by ParseEvaluator and
// LoadEvaluator). Unknown fields are ignored so that a manifest may carry
// extra information, but an unknown "format" version is always refused.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// FileName is the name of the manifest inside a model directory.
const FileName = "sedd.json"

// Format is the manifest format version this package reads.
const Format = 1

// Graph names (the "graph" field).
const (
	GraphAbsorb  = "absorb"
	GraphUniform = "uniform"
)

// Noise schedule names (the "noise.type" field).
const (
	NoiseLogLinear = "loglinear"
	NoiseGeometric = "geometric"
)

// Manifest kinds (the "kind" field). A score-model manifest may omit "kind".
const (
	KindSEDD     = "sedd"
	KindCausalLM = "causal-lm"
)

// Manifest describes an exported SEDD score network. Values returned by Parse
// and Load are validated; treat them as read-only. A Manifest is plain data
// and safe for concurrent reads.
type Manifest struct {
	Format    int       `json:"format"`
	Kind      string    `json:"kind,omitempty"`
	Name      string    `json:"name,omitempty"`
	Graph     string    `json:"graph"`
	Tokens    int       `json:"tokens"`
	Noise     Noise     `json:"noise"`
	Length    int       `json:"length"`
	Model     Model     `json:"model"`
	Tokenizer Tokenizer `json:"tokenizer"`
	ONNX      ONNX      `json:"onnx"`
	// Source describes the checkpoint the model was exported from; free-form.
	Source json.RawMessage `json:"source,omitempty"`
	// Verify is nil when the export carries no golden files.
	Verify *Verify `json:"verify,omitempty"`
	// Exporter describes the program that wrote the export; free-form.
	Exporter json.RawMessage `json:"exporter,omitempty"`
	// Variants are faster graphs of the same network (export/variants.py),
	// in the order sedd.json lists them; empty when there are none.
	Variants []Variant `json:"variants,omitempty"`
}

// Precisions of a variant's arithmetic (the "precision" field).
const (
	PrecisionFP32 = "fp32"
	PrecisionInt8 = "int8"
)

// Reference names model.onnx among the variants: the graph as exported, the
// reference every variant was checked against. No variant may take the name.
const Reference = "reference"

// Variant is a faster graph of the same network, listed under "variants":
// for example "fp32-opt" (ONNX Runtime's transformer fusions, float32) or
// "int8" (dynamic int8 quantization of the weights). Each was checked
// against the golden outputs at export with its own tolerance.
type Variant struct {
	Name      string `json:"name"`
	Precision string `json:"precision"`
	// ONNX is the variant's file; SHA256 and Size are always recorded.
	ONNX ONNX `json:"onnx"`
	// Tolerance is the relative tolerance of Verify for this variant, and
	// ToleranceBasis says in words how it was derived.
	Tolerance      float64 `json:"tolerance"`
	ToleranceBasis string  `json:"tolerance_basis,omitempty"`
	// MaxRelErr and MeanKL are what the exporter measured on the golden
	// cases: max|variant − PyTorch| / max(1, max|PyTorch|), and the mean KL
	// divergence (nats per position) of the distributions exp(log_score)
	// defines. Zero when not recorded.
	MaxRelErr float64 `json:"max_rel_err,omitempty"`
	MeanKL    float64 `json:"mean_kl,omitempty"`
	// Quality is the variant's measured cost on held-out text, or nil when
	// it was not measured.
	Quality *Quality `json:"quality,omitempty"`
}

// Quality is what a variant costs against model.onnx on held-out text,
// measured with the SDK (benchmarks/cmd/sedd-bench quality) and written
// into sedd.json.
type Quality struct {
	// WithinLimits is true when every measured cost is within Limits.
	WithinLimits bool `json:"within_limits"`
	// Limits states the documented limits in words; Summary the
	// measurements.
	Limits  string `json:"limits,omitempty"`
	Summary string `json:"summary,omitempty"`
	// Detail is the full measurement; free-form.
	Detail json.RawMessage `json:"detail,omitempty"`
}

// Variant returns the variant called name, or false.
func (m *Manifest) Variant(name string) (Variant, bool) {
	for _, v := range m.Variants {
		if v.Name == name {
			return v, true
		}
	}
	return Variant{}, false
}

// N returns the size of the score network's last output dimension:
// Tokens+1 for the absorbing graph (the extra state is the mask) and Tokens for
// the uniform graph.
func (m *Manifest) N() int {
	if m.Graph == GraphAbsorb {
		return m.Tokens + 1
	}
	return m.Tokens
}

// MaskID returns the id of the absorbing (mask) state, Tokens, and true for the
// absorbing graph; -1 and false for the uniform graph.
func (m *Manifest) MaskID() (int, bool) {
	if m.Graph == GraphAbsorb {
		return m.Tokens, true
	}
	return -1, false
}

// Noise is the noise schedule σ(t). For "loglinear", Eps is used; for
// "geometric", SigmaMin and SigmaMax.
type Noise struct {
	Type     string  `json:"type"`
	Eps      float64 `json:"eps,omitempty"`
	SigmaMin float64 `json:"sigma_min,omitempty"`
	SigmaMax float64 `json:"sigma_max,omitempty"`
}

// Model holds the network's hyper-parameters, for information and for
// checking a checkpoint against its export. Zero values mean "not recorded".
type Model struct {
	HiddenSize   int   `json:"hidden_size,omitempty"`
	NBlocks      int   `json:"n_blocks,omitempty"`
	NHeads       int   `json:"n_heads,omitempty"`
	CondDim      int   `json:"cond_dim,omitempty"`
	ScaleBySigma bool  `json:"scale_by_sigma"`
	Params       int64 `json:"params,omitempty"`
	// TimeIndependent says the network was trained with its time input held
	// constant, so that its output depends on σ only through scale_by_sigma
	// (absorbing graph, scale_by_sigma on). Absent means false.
	TimeIndependent bool `json:"time_independent,omitempty"`
}

// Tokenizer describes the tokenizer file of the model directory.
type Tokenizer struct {
	// File is the tokenizer.json file name, relative to the model directory.
	File string `json:"file"`
	// Kind names the tokenizer family, for example "byte-level-bpe".
	Kind string `json:"kind,omitempty"`
	// VocabSize is the number of token ids the tokenizer can produce.
	VocabSize int `json:"vocab_size"`
	// SpecialTokens maps literal special-token strings such as
	// "<|endoftext|>" to their ids.
	SpecialTokens map[string]int `json:"special_tokens,omitempty"`
	// EOSID is the end-of-text token id, or -1 when the tokenizer has none.
	EOSID int `json:"eos_id"`
	// SHA256 is the lower-case hex digest of File, or empty when not
	// recorded (manifests written before it was).
	SHA256 string `json:"sha256,omitempty"`
}

// ONNX describes the model.onnx file.
type ONNX struct {
	// File is the ONNX file name, relative to the model directory.
	File  string `json:"file"`
	Opset int    `json:"opset,omitempty"`
	// SHA256 is the lower-case hex digest of File, or empty when not recorded.
	SHA256 string `json:"sha256,omitempty"`
	// Size is File's size in bytes, or 0 when not recorded.
	Size int64 `json:"size,omitempty"`
	// ExternalData is true when weights live in ONNX external-data files next
	// to File (models over 2 GB).
	ExternalData bool `json:"external_data"`
}

// Verify points to the golden files written at export time and records how
// closely ONNX Runtime matched PyTorch there.
type Verify struct {
	// Golden is the golden.json file name.
	Golden string `json:"golden"`
	// Data is the golden.bin file name.
	Data string `json:"data"`
	// Tolerance is the relative tolerance golden comparisons use
	// (max|ONNX − PyTorch| ≤ Tolerance·max(1, max|PyTorch|)).
	Tolerance float64 `json:"tolerance,omitempty"`
	// MaxAbsErr is the largest |ONNX − PyTorch| measured by the exporter, or
	// nil when it had no ONNX Runtime to measure with.
	MaxAbsErr *float64 `json:"max_abs_err,omitempty"`
	// GoldenSHA256 and DataSHA256 are the lower-case hex digests of Golden
	// and Data, or empty when not recorded.
	GoldenSHA256 string `json:"golden_sha256,omitempty"`
	DataSHA256   string `json:"data_sha256,omitempty"`
}

// Load reads and validates dir/sedd.json.
func Load(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse decodes and validates a score-model manifest.
func Parse(data []byte) (*Manifest, error) {
	var r rawManifest
	if err := decode(data, &r); err != nil {
		return nil, err
	}
	if err := checkHeader(r.Format, r.Kind, false); err != nil {
		return nil, err
	}
	m := &Manifest{Format: *r.Format, Kind: r.Kind, Name: r.Name, Source: r.Source, Exporter: r.Exporter}
	var err error
	if m.Graph, err = graph(r.Graph); err != nil {
		return nil, err
	}
	if m.Tokens, err = positive("tokens", r.Tokens); err != nil {
		return nil, err
	}
	if m.Noise, err = noise(r.Noise); err != nil {
		return nil, err
	}
	if m.Length, err = positive("length", r.Length); err != nil {
		return nil, err
	}
	if m.Model, err = model(r.Model); err != nil {
		return nil, err
	}
	if m.Model.TimeIndependent && m.Graph != GraphAbsorb {
		return nil, fieldErr("model.time_independent", ErrMismatch, "true on the %s graph; it is defined for the absorb graph only", m.Graph)
	}
	if m.Tokenizer, err = tokenizer(r.Tokenizer); err != nil {
		return nil, err
	}
	if m.Tokenizer.VocabSize != m.Tokens {
		return nil, fieldErr("tokenizer.vocab_size", ErrMismatch,
			"tokenizer has %d ids but tokens is %d (the %s graph's N would be %d)",
			m.Tokenizer.VocabSize, m.Tokens, m.Graph, m.N())
	}
	if m.ONNX, err = onnxInfo(r.ONNX); err != nil {
		return nil, err
	}
	if m.Verify, err = verify(r.Verify); err != nil {
		return nil, err
	}
	if err := objectOrNull("source", m.Source); err != nil {
		return nil, err
	}
	if err := objectOrNull("exporter", m.Exporter); err != nil {
		return nil, err
	}
	if m.Variants, err = variants(r.Variants, m.ONNX.File); err != nil {
		return nil, err
	}
	return m, nil
}

// Evaluator describes an exported autoregressive language model used to
// measure generative perplexity: model.onnx maps input_ids (int64
// [batch, length]) to next-token logits (float32 [batch, length, VocabSize]).
// Values returned by ParseEvaluator are validated; treat them as read-only.
type Evaluator struct {
	Format int    `json:"format"`
	Kind   string `json:"kind"`
	Name   string `json:"name,omitempty"`
	// VocabSize is the logits' last dimension; it may exceed the tokenizer's
	// vocabulary when the embedding was padded.
	VocabSize int `json:"vocab_size"`
	// Length is the longest context the model was trained on.
	Length    int             `json:"length"`
	Model     json.RawMessage `json:"model,omitempty"`
	Tokenizer Tokenizer       `json:"tokenizer"`
	ONNX      ONNX            `json:"onnx"`
	Source    json.RawMessage `json:"source,omitempty"`
	Verify    *Verify         `json:"verify,omitempty"`
	Exporter  json.RawMessage `json:"exporter,omitempty"`
}

// LoadEvaluator reads and validates dir/sedd.json as an evaluator manifest.
func LoadEvaluator(dir string) (*Evaluator, error) {
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return nil, err
	}
	return ParseEvaluator(data)
}

// ParseEvaluator decodes and validates a causal-lm evaluator manifest.
func ParseEvaluator(data []byte) (*Evaluator, error) {
	var r rawEvaluator
	if err := decode(data, &r); err != nil {
		return nil, err
	}
	if err := checkHeader(r.Format, r.Kind, true); err != nil {
		return nil, err
	}
	e := &Evaluator{Format: *r.Format, Kind: r.Kind, Name: r.Name, Model: r.Model,
		Source: r.Source, Exporter: r.Exporter}
	var err error
	if e.VocabSize, err = positive("vocab_size", r.VocabSize); err != nil {
		return nil, err
	}
	if e.Length, err = positive("length", r.Length); err != nil {
		return nil, err
	}
	if e.Tokenizer, err = tokenizer(r.Tokenizer); err != nil {
		return nil, err
	}
	if e.Tokenizer.VocabSize > e.VocabSize {
		return nil, fieldErr("tokenizer.vocab_size", ErrMismatch,
			"tokenizer has %d ids but the logits only %d", e.Tokenizer.VocabSize, e.VocabSize)
	}
	if e.ONNX, err = onnxInfo(r.ONNX); err != nil {
		return nil, err
	}
	if e.Verify, err = verify(r.Verify); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"model", e.Model}, {"source", e.Source}, {"exporter", e.Exporter}} {
		if err := objectOrNull(f.name, f.v); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// PeekKind returns the "format" and "kind" fields of a manifest without
// validating the rest, so that a caller can pick Parse or ParseEvaluator. Kind
// is "" when the field is absent.
func PeekKind(data []byte) (format int, kind string, err error) {
	var r struct {
		Format *int   `json:"format"`
		Kind   string `json:"kind"`
	}
	if err := decode(data, &r); err != nil {
		return 0, "", err
	}
	if r.Format == nil {
		return 0, "", fieldErr("format", ErrMissing, "")
	}
	return *r.Format, r.Kind, nil
}

type rawManifest struct {
	Format    *int            `json:"format"`
	Kind      string          `json:"kind"`
	Name      string          `json:"name"`
	Graph     *string         `json:"graph"`
	Tokens    *int            `json:"tokens"`
	Noise     *rawNoise       `json:"noise"`
	Length    *int            `json:"length"`
	Model     *rawModel       `json:"model"`
	Tokenizer *rawTokenizer   `json:"tokenizer"`
	ONNX      *rawONNX        `json:"onnx"`
	Source    json.RawMessage `json:"source"`
	Verify    *rawVerify      `json:"verify"`
	Exporter  json.RawMessage `json:"exporter"`
	Variants  []rawVariant    `json:"variants"`
}

type rawVariant struct {
	Name           *string         `json:"name"`
	Precision      *string         `json:"precision"`
	File           *string         `json:"file"`
	SHA256         *string         `json:"sha256"`
	Size           *int64          `json:"size"`
	ExternalData   json.RawMessage `json:"external_data"`
	Tolerance      *float64        `json:"tolerance"`
	ToleranceBasis string          `json:"tolerance_basis"`
	MaxRelErr      *float64        `json:"max_rel_err"`
	MeanKL         *float64        `json:"mean_kl"`
	Quality        *rawQuality     `json:"quality"`
}

type rawQuality struct {
	WithinLimits *bool           `json:"within_limits"`
	Limits       string          `json:"limits"`
	Summary      string          `json:"summary"`
	Detail       json.RawMessage `json:"detail"`
}

type rawEvaluator struct {
	Format    *int            `json:"format"`
	Kind      string          `json:"kind"`
	Name      string          `json:"name"`
	VocabSize *int            `json:"vocab_size"`
	Length    *int            `json:"length"`
	Model     json.RawMessage `json:"model"`
	Tokenizer *rawTokenizer   `json:"tokenizer"`
	ONNX      *rawONNX        `json:"onnx"`
	Source    json.RawMessage `json:"source"`
	Verify    *rawVerify      `json:"verify"`
	Exporter  json.RawMessage `json:"exporter"`
}

type rawNoise struct {
	Type     *string  `json:"type"`
	Eps      *float64 `json:"eps"`
	SigmaMin *float64 `json:"sigma_min"`
	SigmaMax *float64 `json:"sigma_max"`
}

type rawModel struct {
	HiddenSize      *int   `json:"hidden_size"`
	NBlocks         *int   `json:"n_blocks"`
	NHeads          *int   `json:"n_heads"`
	CondDim         *int   `json:"cond_dim"`
	ScaleBySigma    *bool  `json:"scale_by_sigma"`
	Params          *int64 `json:"params"`
	TimeIndependent *bool  `json:"time_independent"`
}

type rawTokenizer struct {
	File          *string        `json:"file"`
	Kind          string         `json:"kind"`
	VocabSize     *int           `json:"vocab_size"`
	SpecialTokens map[string]int `json:"special_tokens"`
	EOSID         *int           `json:"eos_id"`
	SHA256        string         `json:"sha256"`
}

type rawONNX struct {
	File         *string         `json:"file"`
	Opset        *int            `json:"opset"`
	SHA256       string          `json:"sha256"`
	Size         *int64          `json:"size"`
	ExternalData json.RawMessage `json:"external_data"`
}

type rawVerify struct {
	Golden       *string  `json:"golden"`
	Data         *string  `json:"data"`
	Tolerance    *float64 `json:"tolerance"`
	MaxAbsErr    *float64 `json:"max_abs_err"`
	GoldenSHA256 string   `json:"golden_sha256"`
	DataSHA256   string   `json:"data_sha256"`
}

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fieldErr(te.Field, ErrSyntax, "JSON %s where %s was expected", te.Value, te.Type)
		}
		return fmt.Errorf("sedd.json: %w: %v", ErrSyntax, err)
	}
	return nil
}

func checkHeader(format *int, kind string, evaluator bool) error {
	if format == nil {
		return fieldErr("format", ErrMissing, "")
	}
	if *format != Format {
		return fieldErr("format", ErrFormat,
			"version %d; this SDK reads version %d (a newer exporter needs a newer SDK)", *format, Format)
	}
	switch {
	case evaluator && kind != KindCausalLM:
		return fieldErr("kind", ErrKind, "%q; an evaluator manifest has kind %q", kind, KindCausalLM)
	case !evaluator && kind != "" && kind != KindSEDD:
		return fieldErr("kind", ErrKind, "%q; a SEDD score model has no kind or kind %q", kind, KindSEDD)
	}
	return nil
}

func graph(g *string) (string, error) {
	if g == nil {
		return "", fieldErr("graph", ErrMissing, "")
	}
	switch *g {
	case GraphAbsorb, GraphUniform:
		return *g, nil
	}
	return "", fieldErr("graph", ErrGraph, "%q; known graphs are %q and %q", *g, GraphAbsorb, GraphUniform)
}

func positive(field string, v *int) (int, error) {
	if v == nil {
		return 0, fieldErr(field, ErrMissing, "")
	}
	if *v <= 0 {
		return 0, fieldErr(field, ErrInvalid, "%d; must be > 0", *v)
	}
	return *v, nil
}

func finitePositive(field string, v *float64) (float64, error) {
	if v == nil {
		return 0, fieldErr(field, ErrMissing, "")
	}
	if !(*v > 0) || math.IsInf(*v, 0) {
		return 0, fieldErr(field, ErrNoise, "%v; must be finite and > 0", *v)
	}
	return *v, nil
}

func noise(r *rawNoise) (Noise, error) {
	if r == nil {
		return Noise{}, fieldErr("noise", ErrMissing, "")
	}
	if r.Type == nil {
		return Noise{}, fieldErr("noise.type", ErrMissing, "")
	}
	n := Noise{Type: *r.Type}
	var err error
	switch n.Type {
	case NoiseLogLinear:
		if n.Eps, err = finitePositive("noise.eps", r.Eps); err != nil {
			return Noise{}, err
		}
		if n.Eps >= 1 {
			return Noise{}, fieldErr("noise.eps", ErrNoise, "%v; must be in (0, 1)", n.Eps)
		}
	case NoiseGeometric:
		if n.SigmaMin, err = finitePositive("noise.sigma_min", r.SigmaMin); err != nil {
			return Noise{}, err
		}
		if n.SigmaMax, err = finitePositive("noise.sigma_max", r.SigmaMax); err != nil {
			return Noise{}, err
		}
		if n.SigmaMin >= n.SigmaMax {
			return Noise{}, fieldErr("noise.sigma_max", ErrNoise,
				"%v is not above sigma_min %v", n.SigmaMax, n.SigmaMin)
		}
	default:
		return Noise{}, fieldErr("noise.type", ErrNoise, "%q; known schedules are %q and %q",
			n.Type, NoiseLogLinear, NoiseGeometric)
	}
	return n, nil
}

func optionalPositive(field string, v *int) (int, error) {
	if v == nil {
		return 0, nil
	}
	return positive(field, v)
}

func model(r *rawModel) (Model, error) {
	if r == nil {
		return Model{}, nil
	}
	var m Model
	var err error
	if m.HiddenSize, err = optionalPositive("model.hidden_size", r.HiddenSize); err != nil {
		return Model{}, err
	}
	if m.NBlocks, err = optionalPositive("model.n_blocks", r.NBlocks); err != nil {
		return Model{}, err
	}
	if m.NHeads, err = optionalPositive("model.n_heads", r.NHeads); err != nil {
		return Model{}, err
	}
	if m.CondDim, err = optionalPositive("model.cond_dim", r.CondDim); err != nil {
		return Model{}, err
	}
	if m.HiddenSize > 0 && m.NHeads > 0 && m.HiddenSize%m.NHeads != 0 {
		return Model{}, fieldErr("model.n_heads", ErrMismatch,
			"hidden_size %d is not a multiple of n_heads %d", m.HiddenSize, m.NHeads)
	}
	if r.ScaleBySigma != nil {
		m.ScaleBySigma = *r.ScaleBySigma
	}
	if r.Params != nil {
		if *r.Params <= 0 {
			return Model{}, fieldErr("model.params", ErrInvalid, "%d; must be > 0", *r.Params)
		}
		m.Params = *r.Params
	}
	if r.TimeIndependent != nil {
		m.TimeIndependent = *r.TimeIndependent
	}
	if m.TimeIndependent && !m.ScaleBySigma {
		return Model{}, fieldErr("model.time_independent", ErrMismatch,
			"true without scale_by_sigma: a network that ignores its time input must be scaled by sigma to be a SEDD model")
	}
	return m, nil
}

// localFile checks that name is a plain file name inside the model directory:
// relative, without "..", so that a manifest cannot point outside its
// directory.
func localFile(field string, name *string) (string, error) {
	if name == nil {
		return "", fieldErr(field, ErrMissing, "")
	}
	n := *name
	if n == "" || strings.ContainsRune(n, 0) || strings.Contains(n, `\`) || path.IsAbs(n) ||
		!filepath.IsLocal(n) || path.Clean(n) != n {
		return "", fieldErr(field, ErrInvalid, "%q; must be a relative path inside the model directory", n)
	}
	return n, nil
}

func tokenizer(r *rawTokenizer) (Tokenizer, error) {
	if r == nil {
		return Tokenizer{}, fieldErr("tokenizer", ErrMissing, "")
	}
	t := Tokenizer{Kind: r.Kind, EOSID: -1}
	var err error
	if t.File, err = localFile("tokenizer.file", r.File); err != nil {
		return Tokenizer{}, err
	}
	if t.VocabSize, err = positive("tokenizer.vocab_size", r.VocabSize); err != nil {
		return Tokenizer{}, err
	}
	if len(r.SpecialTokens) > 0 {
		t.SpecialTokens = make(map[string]int, len(r.SpecialTokens))
		for name, id := range r.SpecialTokens {
			if name == "" {
				return Tokenizer{}, fieldErr("tokenizer.special_tokens", ErrInvalid, "empty token string")
			}
			if id < 0 || id >= t.VocabSize {
				return Tokenizer{}, fieldErr("tokenizer.special_tokens", ErrInvalid,
					"%q has id %d outside [0, %d)", name, id, t.VocabSize)
			}
			t.SpecialTokens[name] = id
		}
	}
	if r.EOSID != nil && *r.EOSID != -1 {
		if *r.EOSID < 0 || *r.EOSID >= t.VocabSize {
			return Tokenizer{}, fieldErr("tokenizer.eos_id", ErrInvalid,
				"%d outside [0, %d) (use -1 or null for none)", *r.EOSID, t.VocabSize)
		}
		t.EOSID = *r.EOSID
	}
	if t.SHA256, err = digest("tokenizer.sha256", r.SHA256); err != nil {
		return Tokenizer{}, err
	}
	return t, nil
}

// digest checks an optional sha256 field: empty, or 64 lower-case hex digits.
func digest(field, v string) (string, error) {
	if v != "" && (len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "") {
		return "", fieldErr(field, ErrInvalid, "%q; must be 64 lower-case hex digits", v)
	}
	return v, nil
}

func onnxInfo(r *rawONNX) (ONNX, error) {
	if r == nil {
		return ONNX{}, fieldErr("onnx", ErrMissing, "")
	}
	var o ONNX
	var err error
	if o.File, err = localFile("onnx.file", r.File); err != nil {
		return ONNX{}, err
	}
	if r.Opset != nil {
		if *r.Opset <= 0 {
			return ONNX{}, fieldErr("onnx.opset", ErrInvalid, "%d; must be > 0", *r.Opset)
		}
		o.Opset = *r.Opset
	}
	if r.SHA256 != "" {
		if o.SHA256, err = digest("onnx.sha256", r.SHA256); err != nil {
			return ONNX{}, err
		}
	}
	if r.Size != nil {
		if *r.Size <= 0 {
			return ONNX{}, fieldErr("onnx.size", ErrInvalid, "%d; must be > 0", *r.Size)
		}
		o.Size = *r.Size
	}
	if o.ExternalData, err = externalData(r.ExternalData); err != nil {
		return ONNX{}, err
	}
	return o, nil
}

// externalData accepts a boolean, null, or a (possibly empty) list of file
// names or a single file name, which exporters have used to list the
// external-data files.
func externalData(raw json.RawMessage) (bool, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s != "", nil
	}
	var l []string
	if json.Unmarshal(raw, &l) == nil {
		return len(l) > 0, nil
	}
	return false, fieldErr("onnx.external_data", ErrSyntax, "want a boolean, a file name or a list of file names")
}

func verify(r *rawVerify) (*Verify, error) {
	if r == nil {
		return nil, nil
	}
	v := &Verify{}
	var err error
	if v.Golden, err = localFile("verify.golden", r.Golden); err != nil {
		return nil, err
	}
	if v.Data, err = localFile("verify.data", r.Data); err != nil {
		return nil, err
	}
	if r.Tolerance != nil {
		if !(*r.Tolerance > 0) || math.IsInf(*r.Tolerance, 0) {
			return nil, fieldErr("verify.tolerance", ErrInvalid, "%v; must be finite and > 0", *r.Tolerance)
		}
		v.Tolerance = *r.Tolerance
	}
	if r.MaxAbsErr != nil {
		if !(*r.MaxAbsErr >= 0) || math.IsInf(*r.MaxAbsErr, 0) {
			return nil, fieldErr("verify.max_abs_err", ErrInvalid, "%v; must be finite and ≥ 0", *r.MaxAbsErr)
		}
		e := *r.MaxAbsErr
		v.MaxAbsErr = &e
	}
	if v.GoldenSHA256, err = digest("verify.golden_sha256", r.GoldenSHA256); err != nil {
		return nil, err
	}
	if v.DataSHA256, err = digest("verify.data_sha256", r.DataSHA256); err != nil {
		return nil, err
	}
	return v, nil
}

// variants validates the "variants" list: unique names other than
// Reference, a known precision, a file of its own inside the directory with
// its sha256 and size, a finite tolerance > 0.
func variants(raws []rawVariant, base string) ([]Variant, error) {
	if len(raws) == 0 {
		return nil, nil
	}
	out := make([]Variant, 0, len(raws))
	seen := map[string]bool{}
	files := map[string]bool{base: true}
	for i, r := range raws {
		at := fmt.Sprintf("variants[%d]", i)
		if r.Name == nil || *r.Name == "" {
			return nil, fieldErr(at+".name", ErrMissing, "")
		}
		v := Variant{Name: *r.Name, ToleranceBasis: r.ToleranceBasis}
		at = fmt.Sprintf("variants[%d] (%s)", i, v.Name)
		switch {
		case v.Name == Reference:
			return nil, fieldErr(at+".name", ErrInvalid, "%q names model.onnx itself; a variant needs another name", v.Name)
		case seen[v.Name]:
			return nil, fieldErr(at+".name", ErrInvalid, "%q is listed twice", v.Name)
		}
		seen[v.Name] = true
		if r.Precision == nil {
			return nil, fieldErr(at+".precision", ErrMissing, "")
		}
		switch *r.Precision {
		case PrecisionFP32, PrecisionInt8:
			v.Precision = *r.Precision
		default:
			return nil, fieldErr(at+".precision", ErrInvalid, "%q; known precisions are %q and %q", *r.Precision, PrecisionFP32, PrecisionInt8)
		}
		var err error
		if v.ONNX.File, err = localFile(at+".file", r.File); err != nil {
			return nil, err
		}
		if files[v.ONNX.File] {
			return nil, fieldErr(at+".file", ErrInvalid, "%q is the file of model.onnx or of another variant", v.ONNX.File)
		}
		files[v.ONNX.File] = true
		if r.SHA256 == nil || *r.SHA256 == "" {
			return nil, fieldErr(at+".sha256", ErrMissing, "")
		}
		if v.ONNX.SHA256, err = digest(at+".sha256", *r.SHA256); err != nil {
			return nil, err
		}
		if r.Size == nil {
			return nil, fieldErr(at+".size", ErrMissing, "")
		}
		if *r.Size <= 0 {
			return nil, fieldErr(at+".size", ErrInvalid, "%d; must be > 0", *r.Size)
		}
		v.ONNX.Size = *r.Size
		if v.ONNX.ExternalData, err = externalData(r.ExternalData); err != nil {
			return nil, fieldErr(at+".external_data", ErrSyntax, "want a list of file names")
		}
		if r.Tolerance == nil {
			return nil, fieldErr(at+".tolerance", ErrMissing, "")
		}
		if !(*r.Tolerance > 0) || math.IsInf(*r.Tolerance, 0) {
			return nil, fieldErr(at+".tolerance", ErrInvalid, "%v; must be finite and > 0", *r.Tolerance)
		}
		v.Tolerance = *r.Tolerance
		for _, f := range []struct {
			name string
			p    *float64
			dst  *float64
		}{{"max_rel_err", r.MaxRelErr, &v.MaxRelErr}, {"mean_kl", r.MeanKL, &v.MeanKL}} {
			if f.p == nil {
				continue
			}
			if !(*f.p >= 0) || math.IsInf(*f.p, 0) {
				return nil, fieldErr(at+"."+f.name, ErrInvalid, "%v; must be finite and ≥ 0", *f.p)
			}
			*f.dst = *f.p
		}
		if q := r.Quality; q != nil {
			if q.WithinLimits == nil {
				return nil, fieldErr(at+".quality.within_limits", ErrMissing, "")
			}
			if err := objectOrNull(at+".quality.detail", q.Detail); err != nil {
				return nil, err
			}
			v.Quality = &Quality{WithinLimits: *q.WithinLimits, Limits: q.Limits, Summary: q.Summary, Detail: q.Detail}
		}
		out = append(out, v)
	}
	return out, nil
}

func objectOrNull(field string, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || raw[0] == '{' {
		return nil
	}
	return fieldErr(field, ErrSyntax, "want a JSON object")
}

// Diffusion returns the graph and noise schedule the manifest describes.
func (man *Manifest) Diffusion() (diffusion.Graph, diffusion.Noise, error) {
	var g diffusion.Graph
	switch man.Graph {
	case GraphAbsorb:
		g = diffusion.Absorbing{Tokens: man.Tokens}
	case GraphUniform:
		g = diffusion.Uniform{Tokens: man.Tokens}
	default:
		return nil, nil, fmt.Errorf("%w: %q", ErrGraph, man.Graph)
	}
	var n diffusion.Noise
	switch man.Noise.Type {
	case NoiseLogLinear:
		n = diffusion.LogLinear{Eps: man.Noise.Eps}
	case NoiseGeometric:
		n = diffusion.Geometric{SigmaMin: man.Noise.SigmaMin, SigmaMax: man.Noise.SigmaMax}
	default:
		return nil, nil, fmt.Errorf("%w: %q", ErrNoise, man.Noise.Type)
	}
	if err := g.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := n.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoise, err)
	}
	return g, n, nil
}
