package golden

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// build writes a one-case golden pair for batch 1, length 2, N 3 and lets
// mutate change the JSON tree first.
func build(t *testing.T, mutate func(doc map[string]any)) (doc, bin []byte) {
	t.Helper()
	ls := []float32{0, -1, 2, 3, 0, -5}
	lse := []float32{2.1269, 3.0001}
	bin = make([]byte, 4*(len(ls)+len(lse)))
	for i, v := range append(append([]float32{}, ls...), lse...) {
		binary.LittleEndian.PutUint32(bin[4*i:], math.Float32bits(v))
	}
	m := map[string]any{
		"format": 1,
		"data":   "golden.bin",
		"cases": []any{map[string]any{
			"name": "b1-l2", "batch": 1, "length": 2,
			"indices":       []any{0, 1},
			"sigma":         []any{0.5},
			"log_score":     map[string]any{"offset": 0, "count": 6},
			"log_score_lse": map[string]any{"offset": 24, "count": 2},
		}},
	}
	if mutate != nil {
		mutate(m)
	}
	doc, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return doc, bin
}

func firstCase(m map[string]any) map[string]any { return m["cases"].([]any)[0].(map[string]any) }

func TestParse(t *testing.T) {
	doc, bin := build(t, nil)
	cases, err := Parse(doc, bin)
	if err != nil {
		t.Fatal(err)
	}
	c := cases[0]
	if c.N != 3 || c.Batch != 1 || c.Length != 2 || c.Sigma[0] != 0.5 || c.LogScore[2] != 2 || c.LSE[1] != 3.0001 {
		t.Errorf("case decoded wrongly: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		bin    func(b []byte) []byte
		want   error
	}{
		{"future format", func(m map[string]any) { m["format"] = 2 }, nil, ErrFormat},
		{"no format", func(m map[string]any) { delete(m, "format") }, nil, ErrCorrupt},
		{"no cases", func(m map[string]any) { m["cases"] = []any{} }, nil, ErrCorrupt},
		{"short indices", func(m map[string]any) { firstCase(m)["indices"] = []any{0} }, nil, ErrCorrupt},
		{"two sigmas for one row", func(m map[string]any) { firstCase(m)["sigma"] = []any{1, 2} }, nil, ErrCorrupt},
		{"zero batch", func(m map[string]any) { firstCase(m)["batch"] = 0 }, nil, ErrCorrupt},
		{"index out of range", func(m map[string]any) { firstCase(m)["indices"] = []any{0, 3} }, nil, ErrCorrupt},
		{"negative index", func(m map[string]any) { firstCase(m)["indices"] = []any{-1, 0} }, nil, ErrCorrupt},
		{"offset past the end", func(m map[string]any) {
			firstCase(m)["log_score_lse"] = map[string]any{"offset": 28, "count": 2}
		}, nil, ErrCorrupt},
		{"unaligned offset", func(m map[string]any) {
			firstCase(m)["log_score_lse"] = map[string]any{"offset": 23, "count": 2}
		}, nil, ErrCorrupt},
		{"huge count", func(m map[string]any) {
			firstCase(m)["log_score"] = map[string]any{"offset": 0, "count": int64(1) << 60}
		}, nil, ErrCorrupt},
		{"log_score not a multiple of positions", func(m map[string]any) {
			firstCase(m)["log_score"] = map[string]any{"offset": 0, "count": 5}
		}, nil, ErrCorrupt},
		{"lse count wrong", func(m map[string]any) {
			firstCase(m)["log_score_lse"] = map[string]any{"offset": 24, "count": 1}
		}, nil, ErrCorrupt},
		{"missing lse", func(m map[string]any) { delete(firstCase(m), "log_score_lse") }, nil, ErrCorrupt},
		{"truncated data", nil, func(b []byte) []byte { return b[:len(b)-1] }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, bin := build(t, tt.mutate)
			if tt.bin != nil {
				bin = tt.bin(bin)
			}
			if _, err := Parse(doc, bin); !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	doc, bin := build(t, nil)
	cases, err := Parse(doc, bin)
	if err != nil {
		t.Fatal(err)
	}
	c := cases[0]
	clone := func(f func(ls, lse []float32)) ([]float32, []float32) {
		ls, lse := append([]float32{}, c.LogScore...), append([]float32{}, c.LSE...)
		if f != nil {
			f(ls, lse)
		}
		return ls, lse
	}
	tests := []struct {
		name    string
		ls, lse []float32
		ok      bool
		reason  string
	}{
		{name: "identical", ok: true},
		{name: "tiny error", ok: true, reason: "5e-5 absolute on values below 1 is within 1e-4"},
		{name: "scaled tolerance", ok: true, reason: "4e-4 absolute is fine when max|want| = 5"},
		{name: "too far", ok: false},
		{name: "nan", ok: false},
		{name: "input entry not exactly zero", ok: false, reason: "1e-30 at an input token breaks the exact-zero rule"},
	}
	tests[0].ls, tests[0].lse = clone(nil)
	tests[1].ls, tests[1].lse = clone(func(ls, lse []float32) { ls[1] += 5e-5 })
	tests[2].ls, tests[2].lse = clone(func(ls, lse []float32) { ls[5] += 4e-4 })
	tests[3].ls, tests[3].lse = clone(func(ls, lse []float32) { lse[0] += 1e-2 })
	tests[4].ls, tests[4].lse = clone(func(ls, lse []float32) { ls[2] = float32(math.NaN()) })
	tests[5].ls, tests[5].lse = clone(func(ls, lse []float32) { ls[4] = 1e-30 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Check(c, tt.ls, tt.lse)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK(Tolerance) != tt.ok {
				t.Errorf("OK = %v, want %v (%s): %v", !tt.ok, tt.ok, tt.reason, r)
			}
		})
	}
	if _, err := Check(c, c.LogScore[:5], c.LSE); !errors.Is(err, ErrShape) {
		t.Errorf("short log_score: error %v, want ErrShape", err)
	}
	r, _ := Check(c, tests[5].ls, tests[5].lse)
	if r.NonZeroAtInput != 1 || r.FirstNonZero != 1 {
		t.Errorf("NonZeroAtInput, FirstNonZero = %d, %d; want 1, 1", r.NonZeroAtInput, r.FirstNonZero)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	doc, bin := build(t, nil)
	if err := os.WriteFile(filepath.Join(dir, "golden.json"), doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "golden.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load without golden.bin: %v, want os.ErrNotExist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "golden.bin"), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := Load(filepath.Join(dir, "golden.json"))
	if err != nil || len(cases) != 1 {
		t.Fatalf("Load = %d cases, %v", len(cases), err)
	}
	doc, _ = build(t, func(m map[string]any) { m["data"] = "../golden.bin" })
	if err := os.WriteFile(filepath.Join(dir, "escape.json"), doc, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "escape.json")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("data path outside the directory: %v, want ErrCorrupt", err)
	}
}

// TestCommittedFixtures reads the golden files of the committed tiny exports
// and checks that PyTorch's own outputs satisfy the
// exact-zero rule.
func TestCommittedFixtures(t *testing.T) {
	for _, tc := range []struct {
		dir string
		n   int
	}{{"../../testdata/tiny-absorb", 257}, {"../../testdata/tiny-uniform", 256}} {
		path := filepath.Join(tc.dir, "golden.json")
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("committed fixture missing: %v", err)
		}
		cases, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", tc.dir, err)
			continue
		}
		for _, c := range cases {
			if c.N != tc.n {
				t.Errorf("%s %s: N = %d, want %d", tc.dir, c.Name, c.N, tc.n)
			}
			r, err := Check(c, c.LogScore, c.LSE)
			if err != nil || !r.OK(0) {
				t.Errorf("%s %s: golden does not match itself: %v %v", tc.dir, c.Name, r, err)
			}
		}
	}
}

func TestParseLogits(t *testing.T) {
	bin := make([]byte, 4*2*3)
	for i := range 6 {
		binary.LittleEndian.PutUint32(bin[4*i:], math.Float32bits(float32(i)-2.5))
	}
	doc := func(ids string, count int) []byte {
		return []byte(`{"format": 1, "data": "golden.bin", "cases": [{"name": "b1-l2", "batch": 1, "length": 2,
			"input_ids": ` + ids + `, "logits": {"offset": 0, "count": ` + string(rune('0'+count)) + `}}]}`)
	}
	cases, err := ParseLogits(doc("[2, 0]", 6), bin)
	if err != nil {
		t.Fatal(err)
	}
	if c := cases[0]; c.Vocab != 3 || c.Logits[5] != 2.5 || c.InputIDs[0] != 2 {
		t.Errorf("case decoded wrongly: %+v", c)
	}
	tests := []struct {
		name string
		doc  []byte
	}{
		{"id out of range", doc("[3, 0]", 6)},
		{"wrong id count", doc("[0]", 6)},
		{"logits not a multiple of positions", doc("[0, 1]", 5)},
		{"logits past the end", doc("[0, 1]", 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseLogits(tt.doc, bin); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseLogits error = %v, want ErrCorrupt", err)
			}
		})
	}
}
