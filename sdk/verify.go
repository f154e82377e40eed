package sdk

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sedd-go/sedd/sdk/internal/golden"
	"github.com/sedd-go/sedd/sdk/manifest"
)

// DefaultTolerance bounds max|ONNX − PyTorch| relative to max(1, max|PyTorch|)
// for each golden case, on both outputs.
const DefaultTolerance = 1e-4

// ErrVerify marks a model whose ONNX outputs differ from its golden PyTorch
// outputs beyond the tolerance, or whose golden files are missing.
var ErrVerify = errors.New("model does not match its golden outputs")

// VerifyCase is the outcome of one golden case.
type VerifyCase struct {
	Name          string
	Batch, Length int
	// MaxAbsLogScore and MaxAbsLSE are max|ONNX − PyTorch| over the case;
	// RelLogScore and RelLSE divide them by max(1, max|PyTorch|).
	MaxAbsLogScore, RelLogScore float64
	MaxAbsLSE, RelLSE           float64
	// NonZeroAtInput counts log_score entries at the input tokens that are not
	// exactly 0 (the network must scatter zeros there).
	NonZeroAtInput int
	OK             bool
}

// VerifyReport is the outcome of Model.Verify.
type VerifyReport struct {
	Tolerance float64
	Cases     []VerifyCase
	// MaxRel is the largest relative error over all cases and both outputs.
	MaxRel float64
	OK     bool
}

// Verify runs every golden input of the model directory through ONNX Runtime
// and compares with the PyTorch outputs stored at export. tol ≤ 0 means
// DefaultTolerance (or the manifest's verify.tolerance when set). The report is
// returned even when a case fails; the error then matches ErrVerify.
func (m *Model) Verify(ctx context.Context, tol float64) (*VerifyReport, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	tol, cases, err := loadGolden(m.dir, m.man.Verify, tol, golden.Load)
	if err != nil {
		return nil, err
	}
	sc, err := m.scorer()
	if err != nil {
		return nil, err
	}
	defer m.release(sc)
	rep := &VerifyReport{Tolerance: tol, OK: true}
	for _, c := range cases {
		if c.N != m.man.N() {
			return nil, fmt.Errorf("%w: case %s has %d states per position, the model %d", ErrVerify, c.Name, c.N, m.man.N())
		}
		out, err := sc.Score(ctx, c.Indices, c.Sigma, c.Batch, c.Length)
		if err != nil {
			return nil, fmt.Errorf("golden case %s: %w", c.Name, err)
		}
		res, err := golden.Check(c, out.LogScore, out.LSE)
		if err != nil {
			return nil, fmt.Errorf("%w: case %s: %v", ErrVerify, c.Name, err)
		}
		vc := VerifyCase{
			Name: c.Name, Batch: c.Batch, Length: c.Length,
			MaxAbsLogScore: res.LogScore.MaxAbs, RelLogScore: res.LogScore.Rel(),
			MaxAbsLSE: res.LSE.MaxAbs, RelLSE: res.LSE.Rel(),
			NonZeroAtInput: res.NonZeroAtInput, OK: res.OK(tol),
		}
		rep.MaxRel = max(rep.MaxRel, vc.RelLogScore, vc.RelLSE)
		rep.OK = rep.OK && vc.OK
		rep.Cases = append(rep.Cases, vc)
	}
	if !rep.OK {
		return rep, fmt.Errorf("%w: max relative error %.3g exceeds %.3g (or log_score is not 0 at an input token)", ErrVerify, rep.MaxRel, tol)
	}
	return rep, nil
}

// EvaluatorVerifyCase is the outcome of one golden case of an evaluator.
type EvaluatorVerifyCase struct {
	Name          string
	Batch, Length int
	// MaxAbs is max|ONNX − PyTorch| over the case's logits; Rel divides it by
	// max(1, max|PyTorch|).
	MaxAbs, Rel float64
	OK          bool
}

// EvaluatorVerifyReport is the outcome of Evaluator.Verify.
type EvaluatorVerifyReport struct {
	Tolerance float64
	Cases     []EvaluatorVerifyCase
	// MaxRel is the largest relative error over all cases.
	MaxRel float64
	OK     bool
}

// Verify runs every golden input of the evaluator directory through ONNX
// Runtime and compares the logits with the PyTorch ones stored at export, as
// Model.Verify does for a score model: tol ≤ 0 means the manifest's
// verify.tolerance, else DefaultTolerance; the report is returned even when a
// case fails, and the error then matches ErrVerify.
func (e *Evaluator) Verify(ctx context.Context, tol float64) (*EvaluatorVerifyReport, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	tol, cases, err := loadGolden(e.dir, e.man.Verify, tol, golden.LoadLogits)
	if err != nil {
		return nil, err
	}
	runner, err := e.runner()
	if err != nil {
		return nil, err
	}
	defer e.release(runner)
	rep := &EvaluatorVerifyReport{Tolerance: tol, OK: true}
	for _, c := range cases {
		if c.Vocab != e.man.VocabSize {
			return nil, fmt.Errorf("%w: case %s has %d logits per position, the evaluator %d", ErrVerify, c.Name, c.Vocab, e.man.VocabSize)
		}
		got, err := runner.Logits(ctx, c.InputIDs, c.Batch, c.Length)
		if err != nil {
			return nil, fmt.Errorf("golden case %s: %w", c.Name, err)
		}
		d, err := golden.Compare(got, c.Logits)
		if err != nil {
			return nil, fmt.Errorf("%w: case %s: %v", ErrVerify, c.Name, err)
		}
		vc := EvaluatorVerifyCase{Name: c.Name, Batch: c.Batch, Length: c.Length, MaxAbs: d.MaxAbs, Rel: d.Rel(), OK: d.Within(tol)}
		rep.MaxRel = max(rep.MaxRel, vc.Rel)
		rep.OK = rep.OK && vc.OK
		rep.Cases = append(rep.Cases, vc)
	}
	if !rep.OK {
		return rep, fmt.Errorf("%w: max relative error %.3g exceeds %.3g", ErrVerify, rep.MaxRel, tol)
	}
	return rep, nil
}

// loadGolden resolves the tolerance (tol, else the manifest's, else
// DefaultTolerance) and loads the golden cases the manifest names (default
// golden.json) with load. Missing, corrupt or empty files wrap ErrVerify.
func loadGolden[C any](dir string, v *manifest.Verify, tol float64, load func(string) ([]C, error)) (float64, []C, error) {
	if tol <= 0 {
		tol = DefaultTolerance
		if v != nil && v.Tolerance > 0 {
			tol = v.Tolerance
		}
	}
	name := "golden.json"
	if v != nil && v.Golden != "" {
		name = v.Golden
	}
	cases, err := load(filepath.Join(dir, name))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	if len(cases) == 0 {
		return 0, nil, fmt.Errorf("%w: %s holds no cases", ErrVerify, name)
	}
	return tol, cases, nil
}
