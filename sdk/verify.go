package sdk

import (
	"context"
	"fmt"

	"github.com/sedd-go/sedd/sdk/internal/golden"
)

// VerifyRequest describes one Verify call.
type VerifyRequest struct {
	// Tolerance bounds max|ONNX − PyTorch| relative to max(1, max|PyTorch|)
	// for each golden case; 0 means the tolerance sedd.json records for the
	// graph that runs (a variant's own, else verify.tolerance), else 1e-4.
	Tolerance float64
}

// VerifyCase is the outcome of one golden case.
type VerifyCase struct {
	Name   string `json:"name"`
	Batch  int    `json:"batch"`
	Length int    `json:"length"`
	// MaxAbsLogScore and MaxAbsLSE are max|ONNX − PyTorch| over the case;
	// RelLogScore and RelLSE divide them by max(1, max|PyTorch|).
	MaxAbsLogScore float64 `json:"max_abs_log_score"`
	RelLogScore    float64 `json:"rel_log_score"`
	MaxAbsLSE      float64 `json:"max_abs_lse"`
	RelLSE         float64 `json:"rel_lse"`
	// NonZeroAtInput counts log_score entries at the input tokens that are
	// not exactly 0 (the network must scatter zeros there).
	NonZeroAtInput int `json:"nonzero_at_input"`
	// Rows is how many positions a second run asked the output head for
	// (every third, and the last), on a network with the rows input
	// (ONNX-CONTRACT.md); 0 when the network computes every position. The
	// errors above are the larger of the two runs'.
	Rows int  `json:"rows,omitempty"`
	OK   bool `json:"ok"`
}

// VerifyReport is the outcome of Model.Verify.
type VerifyReport struct {
	// Variant and File name the graph checked (Info.Variant, Info.ONNXFile);
	// Tolerance is the one applied: the request's, else the variant's own
	// (sedd.json records how it was derived), else verify.tolerance.
	Variant   string       `json:"variant"`
	File      string       `json:"file"`
	Tolerance float64      `json:"tolerance"`
	Cases     []VerifyCase `json:"cases"`
	// MaxRel is the largest relative error over all cases and both outputs.
	MaxRel float64 `json:"max_rel"`
	OK     bool    `json:"ok"`
}

// Verify runs every golden input of the model (PyTorch's inputs and outputs,
// stored at export) through ONNX Runtime and compares. The report is returned
// even when a case fails; the error then matches ErrBadModel. Missing or
// corrupt golden files are ErrBadModel too.
func (m *Model) Verify(ctx context.Context, req VerifyRequest) (_ *VerifyReport, err error) {
	defer observe(&err)
	requested := req.Tolerance
	if requested == 0 {
		requested = m.choice.tolerance // a variant's own; 0 for model.onnx (the manifest's)
	}
	tol, name, err := golden.Settings(requested, m.man.Verify)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	cases, err := golden.Read(m.dir, name, m.man.Verify, golden.Parse)
	if err != nil {
		return nil, withKind(ErrBadModel, fmt.Errorf("verify %s: %w", m.dir, err))
	}
	sc, err := m.scorer()
	if err != nil {
		return nil, err
	}
	defer sc.release()
	counted := &scoreCounter{m: m, sc: sc}
	rep := &VerifyReport{Variant: m.choice.name, File: m.choice.onnx.File, Tolerance: tol, OK: true}
	for _, c := range cases {
		if c.N != m.man.N() {
			return nil, withKind(ErrBadModel, fmt.Errorf("verify %s: golden case %s has %d states per position, the model %d", m.dir, c.Name, c.N, m.man.N()))
		}
		out, err := counted.Score(ctx, c.Indices, c.Sigma, c.Batch, c.Length)
		if err != nil {
			return nil, fmt.Errorf("golden case %s: %w", c.Name, err)
		}
		res, err := golden.Check(c, out.LogScore, out.LSE)
		if err != nil {
			return nil, withKind(ErrBadModel, fmt.Errorf("verify %s: golden case %s: %w", m.dir, c.Name, err))
		}
		vc := VerifyCase{
			Name: c.Name, Batch: c.Batch, Length: c.Length,
			MaxAbsLogScore: res.LogScore.MaxAbs, RelLogScore: res.LogScore.Rel(),
			MaxAbsLSE: res.LSE.MaxAbs, RelLSE: res.LSE.Rel(),
			NonZeroAtInput: res.NonZeroAtInput, OK: res.OK(tol),
		}
		rows := verifyRows(c.Batch * c.Length)
		part, err := counted.ScoreRows(ctx, c.Indices, c.Sigma, c.Batch, c.Length, rows)
		if err != nil {
			return nil, fmt.Errorf("golden case %s, %d rows: %w", c.Name, len(rows), err)
		}
		if part.Rows != nil { // the network computed those rows alone
			pres, err := golden.CheckRows(c, rows, part.LogScore, part.LSE)
			if err != nil {
				return nil, withKind(ErrBadModel, fmt.Errorf("verify %s: golden case %s, %d rows: %w", m.dir, c.Name, len(rows), err))
			}
			vc.Rows = len(rows)
			vc.MaxAbsLogScore, vc.RelLogScore = max(vc.MaxAbsLogScore, pres.LogScore.MaxAbs), max(vc.RelLogScore, pres.LogScore.Rel())
			vc.MaxAbsLSE, vc.RelLSE = max(vc.MaxAbsLSE, pres.LSE.MaxAbs), max(vc.RelLSE, pres.LSE.Rel())
			vc.NonZeroAtInput += pres.NonZeroAtInput
			vc.OK = vc.OK && pres.OK(tol)
		}
		rep.MaxRel = max(rep.MaxRel, vc.RelLogScore, vc.RelLSE)
		rep.OK = rep.OK && vc.OK
		rep.Cases = append(rep.Cases, vc)
	}
	if !rep.OK {
		return rep, withKind(ErrBadModel, fmt.Errorf("verify %s: the network (%s, %s) does not reproduce its golden outputs: max relative error %.3g exceeds %.3g (or log_score is not 0 at an input token); export the model again, or check that the ONNX Runtime version is one it was exported for",
			m.dir, m.choice.name, m.choice.onnx.File, rep.MaxRel, tol))
	}
	return rep, nil
}

// verifyRows returns the positions Verify's second run of a case of n
// positions asks for: every third one and the last.
func verifyRows(n int) []int32 {
	rows := make([]int32, 0, n/3+2)
	for p := 0; p < n; p += 3 {
		rows = append(rows, int32(p))
	}
	if rows[len(rows)-1] != int32(n-1) {
		rows = append(rows, int32(n-1))
	}
	return rows
}
