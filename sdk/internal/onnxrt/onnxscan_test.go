package onnxrt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Minimal protobuf encoder for crafting ONNX files in tests.

func pbVarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func pbKey(num, wire int) []byte { return pbVarint(uint64(num)<<3 | uint64(wire)) }

func pbInt(num int, v int64) []byte { return append(pbKey(num, wireVarint), pbVarint(uint64(v))...) }

func pbBytes(num int, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	out := append(pbKey(num, wireLen), pbVarint(uint64(len(body)))...)
	return append(out, body...)
}

func pbString(num int, s string) []byte { return pbBytes(num, []byte(s)) }

// valueInfo encodes a ValueInfoProto with a tensor type; a dim < 0 is written
// as a symbolic dim_param.
func valueInfo(name string, elem int32, dims ...int64) []byte {
	var ds [][]byte
	for _, d := range dims {
		if d < 0 {
			ds = append(ds, pbBytes(1, pbString(2, "dyn")))
		} else {
			ds = append(ds, pbBytes(1, pbInt(1, d)))
		}
	}
	tensor := pbBytes(1, pbInt(1, int64(elem)), pbBytes(2, ds...))
	return pbBytes(2, pbString(1, name), pbBytes(2, tensor))
}

func node(name, op string, inputs ...string) []byte {
	parts := [][]byte{}
	for _, in := range inputs {
		parts = append(parts, pbString(1, in))
	}
	parts = append(parts, pbString(2, name+"_out"), pbString(3, name), pbString(4, op))
	return pbBytes(1, parts...)
}

// model encodes a ModelProto whose graph has the given nodes, inputs and
// outputs (already encoded as graph fields 1, 11 and 12), plus a large
// initializer that the scanner must skip.
func model(graphFields ...[]byte) []byte {
	init := pbBytes(5, pbString(8, "weight"), pbBytes(9, make([]byte, 100_000)))
	g := append([][]byte{init}, graphFields...)
	return bytes.Join([][]byte{
		pbInt(1, 8),
		pbString(2, "test"),
		pbBytes(7, g...),
		pbBytes(8, pbString(1, ""), pbInt(2, 17)),
	}, nil)
}

func in(v []byte) []byte  { return append(pbKey(11, wireLen), v[1:]...) }
func out(v []byte) []byte { return append(pbKey(12, wireLen), v[1:]...) }

// scoreModel is a graph with the contract's inputs and outputs for N = n.
func scoreModel(n int64, extra ...[]byte) []byte {
	fields := [][]byte{
		node("ln", "LayerNormalization", "x", "scale"),
		in(valueInfo(InputIndices, onnxInt64, -1, -1)),
		in(valueInfo(InputSigma, onnxFloat, -1)),
		out(valueInfo(OutputLogScore, onnxFloat, -1, -1, n)),
		out(valueInfo(OutputLSE, onnxFloat, -1, -1)),
	}
	return model(append(fields, extra...)...)
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScanONNX(t *testing.T) {
	path := writeTemp(t, "m.onnx", scoreModel(257, node("ln2", "LayerNormalization", "y", "", ""), node("clip", "Clip", "z", "", "max")))
	g, err := ScanONNX(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &GraphInfo{
		IRVersion: 8,
		Opsets:    map[string]int64{"": 17},
		Inputs:    []ValueInfo{{InputIndices, onnxInt64, []int64{-1, -1}}, {InputSigma, onnxFloat, []int64{-1}}},
		Outputs:   []ValueInfo{{OutputLogScore, onnxFloat, []int64{-1, -1, 257}}, {OutputLSE, onnxFloat, []int64{-1, -1}}},
		Nodes:     3,
		EmptyInputs: []EmptyInput{
			{"ln2", "LayerNormalization", 1}, {"ln2", "LayerNormalization", 2}, {"clip", "Clip", 1},
		},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("ScanONNX =\n%+v\nwant\n%+v", g, want)
	}
	err = checkEmptyInputs(g)
	if !errors.Is(err, ErrEmptyNodeInput) {
		t.Errorf("checkEmptyInputs = %v, want ErrEmptyNodeInput for the LayerNormalization", err)
	}
	g.EmptyInputs = g.EmptyInputs[2:]
	if err := checkEmptyInputs(g); err != nil {
		t.Errorf("an omitted optional Clip input was refused: %v", err)
	}
}

func TestScanONNXRejects(t *testing.T) {
	good := scoreModel(257)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty file", nil},
		{"json", []byte(`{"format": 1}`)},
		{"text", []byte("this is not a model\n")},
		{"no graph", bytes.Join([][]byte{pbInt(1, 8), pbString(2, "x")}, nil)},
		{"no ir version", pbBytes(7, node("a", "Relu", "x"))},
		{"length past the end", append(pbKey(7, wireLen), pbVarint(1<<40)...)},
		{"group wire type", pbKey(7, 3)},
		{"overlong varint", append(pbKey(1, wireVarint), bytes.Repeat([]byte{0xff}, 11)...)},
		{"graph is an integer", append(pbInt(1, 8), pbInt(7, 3)...)},
		{"truncated in the middle", good[:len(good)/2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ScanONNX(writeTemp(t, "m.onnx", tt.data))
			if !errors.Is(err, ErrNotONNX) {
				t.Fatalf("ScanONNX error = %v, want ErrNotONNX", err)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		// Every proper prefix must fail cleanly; most end inside a field.
		// Some prefixes end exactly between fields and are well-formed
		// protobuf, but then lack the graph or the IR version.
		for n := 0; n < len(good); n += 97 {
			g, err := scanModel(newBlockReader(bytes.NewReader(good[:n])), int64(n))
			if err == nil && reflect.DeepEqual(g.Outputs, []ValueInfo{{OutputLogScore, onnxFloat, []int64{-1, -1, 257}}, {OutputLSE, onnxFloat, []int64{-1, -1}}}) {
				t.Fatalf("prefix of %d/%d bytes scanned as the complete model", n, len(good))
			}
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := ScanONNX(t.TempDir()); !errors.Is(err, ErrNotONNX) {
			t.Fatalf("ScanONNX(dir) error = %v, want ErrNotONNX", err)
		}
	})
}

func TestCheckScoreGraph(t *testing.T) {
	base := func() *GraphInfo {
		return &GraphInfo{
			Inputs:  []ValueInfo{{InputIndices, onnxInt64, []int64{-1, -1}}, {InputSigma, onnxFloat, []int64{-1}}},
			Outputs: []ValueInfo{{OutputLogScore, onnxFloat, []int64{-1, -1, 257}}, {OutputLSE, onnxFloat, []int64{-1, -1}}},
		}
	}
	tests := []struct {
		name   string
		edit   func(g *GraphInfo)
		n      int
		wantOK bool
	}{
		{"contract", func(g *GraphInfo) {}, 257, true},
		{"unknown shapes are accepted", func(g *GraphInfo) { g.Outputs[0].Dims = nil }, 300, true},
		{"dynamic vocabulary", func(g *GraphInfo) { g.Outputs[0].Dims[2] = -1 }, 300, true},
		{"extra output is ignored", func(g *GraphInfo) { g.Outputs = append(g.Outputs, ValueInfo{"h", onnxFloat, nil}) }, 257, true},
		{"N differs from the manifest", func(g *GraphInfo) {}, 256, false},
		{"input renamed", func(g *GraphInfo) { g.Inputs[0].Name = "input_ids" }, 257, false},
		{"extra input", func(g *GraphInfo) { g.Inputs = append(g.Inputs, ValueInfo{"mask", onnxInt64, nil}) }, 257, false},
		{"int32 indices", func(g *GraphInfo) { g.Inputs[0].ElemType = 6 }, 257, false},
		{"float64 sigma", func(g *GraphInfo) { g.Inputs[1].ElemType = 11 }, 257, false},
		{"sigma rank 2", func(g *GraphInfo) { g.Inputs[1].Dims = []int64{-1, 1} }, 257, false},
		{"lse missing", func(g *GraphInfo) { g.Outputs = g.Outputs[:1] }, 257, false},
		{"log_score rank 2", func(g *GraphInfo) { g.Outputs[0].Dims = []int64{-1, 257} }, 257, false},
		{"static batch", func(g *GraphInfo) { g.Inputs[0].Dims = []int64{1, -1} }, 257, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := base()
			tt.edit(g)
			err := CheckScoreGraph(g, tt.n)
			if tt.wantOK && err != nil {
				t.Fatalf("CheckScoreGraph = %v, want nil", err)
			}
			if !tt.wantOK && !errors.Is(err, ErrGraphMismatch) {
				t.Fatalf("CheckScoreGraph = %v, want ErrGraphMismatch", err)
			}
		})
	}
}

// FuzzScanONNX checks that the scanner never panics and never reads outside
// the data it is given.
func FuzzScanONNX(f *testing.F) {
	f.Add(scoreModel(257))
	f.Add(scoreModel(50258, node("ln", "LayerNormalization", "x", "", "")))
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := scanModel(newBlockReader(bytes.NewReader(data)), int64(len(data)))
		if err == nil && g.IRVersion <= 0 {
			t.Fatalf("accepted a model without IR version")
		}
		if err != nil && !errors.Is(err, ErrNotONNX) {
			t.Fatalf("error %v does not wrap ErrNotONNX", err)
		}
	})
}
