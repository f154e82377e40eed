// Package golden reads the golden files of an exported model (golden.json and
// the raw little-endian float32 file it points to, see docs/DESIGN.md) and
// compares score-network outputs against them.
//
// The golden values come from PyTorch at export time; comparing ONNX Runtime's
// outputs with them proves that the export is faithful.
package golden

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"

	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Format is the golden.json format version this package reads.
const Format = 1

// Tolerance is the relative tolerance of the contract:
// max|ONNX − PyTorch| ≤ Tolerance·max(1, max|PyTorch|) over each case and output.
const Tolerance = 1e-4

// Sentinel errors, matched with errors.Is.
var (
	// ErrFormat marks a golden.json of an unknown format version.
	ErrFormat = kind.New(kind.ErrBadModel, "unsupported golden format")
	// ErrCorrupt marks a golden file whose cases, offsets or counts are
	// inconsistent with each other or with the data file.
	ErrCorrupt = kind.New(kind.ErrBadModel, "corrupt golden file")
	// ErrShape marks outputs given to Check whose sizes do not match the case.
	ErrShape = kind.New(kind.ErrBadModel, "output shape does not match the golden case")
)

// Case is one PyTorch input/output pair.
type Case struct {
	Name          string
	Batch, Length int
	// N is the vocabulary dimension of LogScore.
	N int
	// Indices holds Batch*Length token ids, row-major.
	Indices []int64
	// Sigma holds one σ per row.
	Sigma []float32
	// LogScore holds Batch*Length*N values, row-major [b][i][j].
	LogScore []float32
	// LSE holds Batch*Length values: log Σ_{j≠x_i} exp(LogScore[b][i][j]).
	LSE []float32
}

type span struct {
	Offset *int64 `json:"offset"`
	Count  *int64 `json:"count"`
}

type rawCase struct {
	Name     string    `json:"name"`
	Batch    int       `json:"batch"`
	Length   int       `json:"length"`
	Indices  []int64   `json:"indices"`
	Sigma    []float32 `json:"sigma"`
	LogScore *span     `json:"log_score"`
	LSE      *span     `json:"log_score_lse"`
}

type rawFile struct {
	Format *int      `json:"format"`
	Data   string    `json:"data"`
	Cases  []rawCase `json:"cases"`
}

// Load reads a golden.json file of a score network and the data file it
// names, which is looked up in the same directory.
func Load(jsonPath string) ([]Case, error) {
	return Read(modeldir.OnDisk(filepath.Dir(jsonPath)), filepath.Base(jsonPath), nil, Parse)
}

// LoadLogits reads a golden.json file of a causal-lm evaluator and its data
// file.
func LoadLogits(jsonPath string) ([]LogitsCase, error) {
	return Read(modeldir.OnDisk(filepath.Dir(jsonPath)), filepath.Base(jsonPath), nil, ParseLogits)
}

// Settings returns the tolerance and golden file of a verification: the
// requested tolerance (0: the one the manifest records, else Tolerance) and
// the golden file the manifest names (else golden.json). A negative, NaN or
// infinite tolerance is an error.
func Settings(requested float64, v *manifest.Verify) (tol float64, file string, err error) {
	switch {
	case requested < 0 || math.IsNaN(requested) || math.IsInf(requested, 0):
		return 0, "", fmt.Errorf("tolerance must be finite and > 0, got %g", requested)
	case requested > 0:
		tol = requested
	case v != nil && v.Tolerance > 0:
		tol = v.Tolerance
	default:
		tol = Tolerance
	}
	file = "golden.json"
	if v != nil && v.Golden != "" {
		file = v.Golden
	}
	return tol, file, nil
}

// Read reads the golden file name of the model directory d and the data file
// it names, each a regular file within its size limit (and, when the
// manifest's verify section v records them, with their sha256), and decodes
// them with parse. A file without cases is an error.
func Read[C any](d modeldir.Dir, name string, v *manifest.Verify, parse func(doc, bin []byte) ([]C, error)) ([]C, error) {
	var goldenSHA, dataSHA string
	if v != nil {
		goldenSHA, dataSHA = v.GoldenSHA256, v.DataSHA256
	}
	doc, err := d.ReadVerified(name, modeldir.MaxGolden, goldenSHA)
	if err != nil {
		return nil, err
	}
	var head struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return nil, fmt.Errorf("golden: %s: %w: %v", name, ErrCorrupt, err)
	}
	if head.Data == "" || !filepath.IsLocal(head.Data) {
		return nil, fmt.Errorf("golden: %s: %w: data file %q must be a relative path inside the directory", name, ErrCorrupt, head.Data)
	}
	if v != nil && v.Data != "" && head.Data != v.Data {
		return nil, fmt.Errorf("golden: %s: %w: it names data file %q, sedd.json %q", name, ErrCorrupt, head.Data, v.Data)
	}
	bin, err := d.ReadVerified(head.Data, modeldir.MaxGoldenBin, dataSHA)
	if err != nil {
		return nil, err
	}
	cases, err := parse(doc, bin)
	if err != nil {
		return nil, fmt.Errorf("golden: %s: %w", name, err)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("golden: %s: %w: no cases", name, ErrCorrupt)
	}
	return cases, nil
}

// Parse decodes golden.json contents doc with bin, the contents of its data
// file, and validates every case: sizes of indices and sigma, offsets and
// counts inside bin, one vocabulary dimension N for all cases, token ids in
// [0, N).
func Parse(doc, bin []byte) ([]Case, error) {
	var f rawFile
	if err := json.Unmarshal(doc, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if f.Format == nil {
		return nil, fmt.Errorf("%w: no format field", ErrCorrupt)
	}
	if *f.Format != Format {
		return nil, fmt.Errorf("%w: version %d, this SDK reads version %d", ErrFormat, *f.Format, Format)
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%w: no cases", ErrCorrupt)
	}
	cases := make([]Case, 0, len(f.Cases))
	n := 0
	for i, rc := range f.Cases {
		c, err := parseCase(rc, bin)
		if err != nil {
			return nil, fmt.Errorf("case %d (%q): %w", i, rc.Name, err)
		}
		if n == 0 {
			n = c.N
		} else if c.N != n {
			return nil, fmt.Errorf("case %d (%q): %w: vocabulary dimension %d differs from %d of earlier cases", i, rc.Name, ErrCorrupt, c.N, n)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

func parseCase(rc rawCase, bin []byte) (Case, error) {
	if rc.Batch <= 0 || rc.Length <= 0 || rc.Batch > math.MaxInt32 || rc.Length > math.MaxInt32 {
		return Case{}, fmt.Errorf("%w: batch %d, length %d", ErrCorrupt, rc.Batch, rc.Length)
	}
	rows := int64(rc.Batch) * int64(rc.Length)
	if int64(len(rc.Indices)) != rows {
		return Case{}, fmt.Errorf("%w: %d indices for batch %d × length %d", ErrCorrupt, len(rc.Indices), rc.Batch, rc.Length)
	}
	if len(rc.Sigma) != rc.Batch {
		return Case{}, fmt.Errorf("%w: %d sigma values for batch %d", ErrCorrupt, len(rc.Sigma), rc.Batch)
	}
	if rc.LogScore == nil || rc.LSE == nil {
		return Case{}, fmt.Errorf("%w: log_score and log_score_lse are both required", ErrCorrupt)
	}
	ls, err := floats("log_score", rc.LogScore, bin)
	if err != nil {
		return Case{}, err
	}
	lse, err := floats("log_score_lse", rc.LSE, bin)
	if err != nil {
		return Case{}, err
	}
	if int64(len(lse)) != rows {
		return Case{}, fmt.Errorf("%w: log_score_lse has %d values, want %d", ErrCorrupt, len(lse), rows)
	}
	if int64(len(ls))%rows != 0 || len(ls) == 0 {
		return Case{}, fmt.Errorf("%w: log_score has %d values, not a multiple of %d positions", ErrCorrupt, len(ls), rows)
	}
	n := int(int64(len(ls)) / rows)
	for k, x := range rc.Indices {
		if x < 0 || x >= int64(n) {
			return Case{}, fmt.Errorf("%w: indices[%d] = %d outside [0, %d)", ErrCorrupt, k, x, n)
		}
	}
	return Case{Name: rc.Name, Batch: rc.Batch, Length: rc.Length, N: n,
		Indices: rc.Indices, Sigma: rc.Sigma, LogScore: ls, LSE: lse}, nil
}

func floats(field string, s *span, bin []byte) ([]float32, error) {
	if s.Offset == nil || s.Count == nil {
		return nil, fmt.Errorf("%w: %s needs offset and count", ErrCorrupt, field)
	}
	off, count := *s.Offset, *s.Count
	if off < 0 || count <= 0 || off%4 != 0 || count > int64(len(bin))/4 || off > int64(len(bin))-4*count {
		return nil, fmt.Errorf("%w: %s offset %d count %d outside a data file of %d bytes", ErrCorrupt, field, off, count, len(bin))
	}
	out := make([]float32, count)
	b := bin[off : off+4*count]
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// LogitsCase is one PyTorch input/output pair of a causal-lm evaluator.
type LogitsCase struct {
	Name          string
	Batch, Length int
	// Vocab is the last dimension of Logits.
	Vocab int
	// InputIDs holds Batch*Length token ids, row-major.
	InputIDs []int64
	// Logits holds Batch*Length*Vocab next-token logits, row-major.
	Logits []float32
}

// ParseLogits decodes and validates the golden.json contents of a causal-lm
// evaluator (cases with input_ids and logits) with its data file.
func ParseLogits(doc, bin []byte) ([]LogitsCase, error) {
	var f struct {
		Format *int `json:"format"`
		Cases  []struct {
			Name     string  `json:"name"`
			Batch    int     `json:"batch"`
			Length   int     `json:"length"`
			InputIDs []int64 `json:"input_ids"`
			Logits   *span   `json:"logits"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(doc, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if f.Format == nil {
		return nil, fmt.Errorf("%w: no format field", ErrCorrupt)
	}
	if *f.Format != Format {
		return nil, fmt.Errorf("%w: version %d, this SDK reads version %d", ErrFormat, *f.Format, Format)
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%w: no cases", ErrCorrupt)
	}
	var cases []LogitsCase
	for i, rc := range f.Cases {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("case %d (%q): %w: %s", i, rc.Name, ErrCorrupt, fmt.Sprintf(format, args...))
		}
		if rc.Batch <= 0 || rc.Length <= 0 || rc.Batch > math.MaxInt32 || rc.Length > math.MaxInt32 {
			return nil, fail("batch %d, length %d", rc.Batch, rc.Length)
		}
		rows := int64(rc.Batch) * int64(rc.Length)
		if int64(len(rc.InputIDs)) != rows {
			return nil, fail("%d input ids for batch %d × length %d", len(rc.InputIDs), rc.Batch, rc.Length)
		}
		if rc.Logits == nil {
			return nil, fail("logits missing")
		}
		logits, err := floats("logits", rc.Logits, bin)
		if err != nil {
			return nil, fmt.Errorf("case %d (%q): %w", i, rc.Name, err)
		}
		if int64(len(logits))%rows != 0 {
			return nil, fail("logits has %d values, not a multiple of %d positions", len(logits), rows)
		}
		vocab := int(int64(len(logits)) / rows)
		if len(cases) > 0 && vocab != cases[0].Vocab {
			return nil, fail("vocabulary %d differs from %d of earlier cases", vocab, cases[0].Vocab)
		}
		for k, x := range rc.InputIDs {
			if x < 0 || x >= int64(vocab) {
				return nil, fail("input_ids[%d] = %d outside [0, %d)", k, x, vocab)
			}
		}
		cases = append(cases, LogitsCase{Name: rc.Name, Batch: rc.Batch, Length: rc.Length, Vocab: vocab,
			InputIDs: rc.InputIDs, Logits: logits})
	}
	return cases, nil
}

// Diff measures how far one output is from its golden value.
type Diff struct {
	// MaxAbs is max|got − want|; +Inf when got has a NaN or infinity where
	// want does not (or the other way round).
	MaxAbs float64
	// At is the flat index where MaxAbs occurs.
	At int
	// MaxRef is max|want| over finite entries.
	MaxRef float64
}

// Rel is MaxAbs / max(1, MaxRef), the quantity the contract bounds by
// Tolerance.
func (d Diff) Rel() float64 { return d.MaxAbs / math.Max(1, d.MaxRef) }

// Within reports whether MaxAbs ≤ tol·max(1, MaxRef).
func (d Diff) Within(tol float64) bool { return d.MaxAbs <= tol*math.Max(1, d.MaxRef) }

// Compare measures got against want, which must have the same length.
func Compare(got, want []float32) (Diff, error) {
	if len(got) != len(want) {
		return Diff{}, fmt.Errorf("%w: %d values, golden has %d", ErrShape, len(got), len(want))
	}
	var d Diff
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if !math.IsInf(w, 0) && !math.IsNaN(w) {
			d.MaxRef = math.Max(d.MaxRef, math.Abs(w))
		}
		var e float64
		switch {
		case g == w: // covers equal infinities
		case math.IsNaN(g) || math.IsNaN(w) || math.IsInf(g, 0) || math.IsInf(w, 0):
			e = math.Inf(1)
		default:
			e = math.Abs(g - w)
		}
		if e > d.MaxAbs {
			d.MaxAbs, d.At = e, i
		}
	}
	return d, nil
}

// Result is the outcome of checking one case.
type Result struct {
	LogScore, LSE Diff
	// NonZeroAtInput counts positions whose log_score entry at the input token
	// is not exactly 0; FirstNonZero is the first such flat position, or -1.
	NonZeroAtInput int
	FirstNonZero   int
}

// OK reports whether both outputs are within tol and every entry at an input
// token is exactly 0.
func (r Result) OK(tol float64) bool {
	return r.LogScore.Within(tol) && r.LSE.Within(tol) && r.NonZeroAtInput == 0
}

// String summarises the result for logs and CLI output.
func (r Result) String() string {
	return fmt.Sprintf("log_score max|Δ| %.3g (rel %.3g), log_score_lse max|Δ| %.3g (rel %.3g), %d non-zero entries at input tokens",
		r.LogScore.MaxAbs, r.LogScore.Rel(), r.LSE.MaxAbs, r.LSE.Rel(), r.NonZeroAtInput)
}

// Check compares a score network's outputs for c's inputs against c.
func Check(c Case, logScore, lse []float32) (Result, error) {
	var r Result
	var err error
	if r.LogScore, err = Compare(logScore, c.LogScore); err != nil {
		return Result{}, fmt.Errorf("log_score: %w", err)
	}
	if r.LSE, err = Compare(lse, c.LSE); err != nil {
		return Result{}, fmt.Errorf("log_score_lse: %w", err)
	}
	r.NonZeroAtInput, r.FirstNonZero = ZerosAtInput(logScore, c.Indices, c.N)
	return r, nil
}

// CheckRows compares the outputs of a score network asked for the flat
// positions rows of c's inputs only (log_score len(rows)×N, log_score_lse
// len(rows)) against c's outputs at those positions. rows must lie in
// [0, Batch·Length).
func CheckRows(c Case, rows []int32, logScore, lse []float32) (Result, error) {
	want := Case{Name: c.Name, Batch: 1, Length: len(rows), N: c.N, Sigma: c.Sigma[:1],
		Indices: make([]int64, len(rows)), LogScore: make([]float32, 0, len(rows)*c.N), LSE: make([]float32, len(rows))}
	for k, p := range rows {
		if p < 0 || int(p) >= len(c.Indices) {
			return Result{}, fmt.Errorf("%w: row %d outside the case's %d positions", ErrShape, p, len(c.Indices))
		}
		want.Indices[k] = c.Indices[p]
		want.LogScore = append(want.LogScore, c.LogScore[int(p)*c.N:(int(p)+1)*c.N]...)
		want.LSE[k] = c.LSE[p]
	}
	return Check(want, logScore, lse)
}

// ZerosAtInput checks that logScore[p][indices[p]] == 0 exactly for every
// position p, where logScore holds len(indices)*n values. It returns the number
// of positions where that fails and the first of them (-1 when none).
// Positions whose index lies outside [0, n) count as failures.
func ZerosAtInput(logScore []float32, indices []int64, n int) (bad, first int) {
	first = -1
	for p, x := range indices {
		k := p*n + int(x)
		if x < 0 || x >= int64(n) || k >= len(logScore) || logScore[k] != 0 {
			bad++
			if first < 0 {
				first = p
			}
		}
	}
	return bad, first
}
