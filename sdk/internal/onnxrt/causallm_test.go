package onnxrt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// tensorProto encodes a float32 initializer (TensorProto: 1 dims, 2
// data_type, 8 name, 9 raw_data).
func tensorProto(field int, name string, data []float32, dims ...int64) []byte {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	parts := [][]byte{}
	for _, d := range dims {
		parts = append(parts, pbInt(1, d))
	}
	parts = append(parts, pbInt(2, onnxFloat), pbString(8, name), pbBytes(9, raw))
	return pbBytes(field, parts...)
}

// bigramModel is a runnable causal LM: logits = emb[input_ids] · proj, with
// emb [vocab, hidden] and proj [hidden, vocab].
func bigramModel(vocab, hidden int, emb, proj []float32) []byte {
	gather := pbBytes(1, pbString(1, "emb"), pbString(1, InputIDs), pbString(2, "h"),
		pbString(3, "gather"), pbString(4, "Gather"))
	matmul := pbBytes(1, pbString(1, "h"), pbString(1, "proj"), pbString(2, OutputLogits),
		pbString(3, "matmul"), pbString(4, "MatMul"))
	graph := pbBytes(7,
		gather, matmul,
		pbString(2, "bigram"),
		tensorProto(5, "emb", emb, int64(vocab), int64(hidden)),
		tensorProto(5, "proj", proj, int64(hidden), int64(vocab)),
		in(valueInfo(InputIDs, onnxInt64, -1, -1)),
		out(valueInfo(OutputLogits, onnxFloat, -1, -1, int64(vocab))),
	)
	return bytes.Join([][]byte{pbInt(1, 8), pbString(2, "test"), graph, pbBytes(8, pbString(1, ""), pbInt(2, 17))}, nil)
}

func TestCausalLM(t *testing.T) {
	needLibrary(t)
	const vocab, hidden = 5, 3
	emb := make([]float32, vocab*hidden)
	proj := make([]float32, hidden*vocab)
	for i := range emb {
		emb[i] = float32(i%7) - 2.5
		proj[i] = float32((3*i)%5) * 0.25
	}
	path := writeTemp(t, "lm.onnx", bigramModel(vocab, hidden, emb, proj))

	if _, err := OpenCausalLMFile(path, vocab+1); !errors.Is(err, ErrGraphMismatch) {
		t.Errorf("OpenCausalLMFile with the wrong vocabulary: %v, want ErrGraphMismatch", err)
	}
	if _, err := OpenFile(path, vocab); !errors.Is(err, ErrGraphMismatch) {
		t.Errorf("OpenFile (score network) of an evaluator: %v, want ErrGraphMismatch", err)
	}
	lm, err := OpenCausalLMFile(path, vocab, WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	r, err := lm.NewRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ids := []int64{0, 4, 2, 1, 3, 3}
	for _, shape := range [][2]int{{2, 3}, {1, 6}, {2, 3}} {
		batch, length := shape[0], shape[1]
		got, err := r.Logits(t.Context(), ids, batch, length)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != batch*length*vocab {
			t.Fatalf("%d logits, want %d", len(got), batch*length*vocab)
		}
		for p, id := range ids {
			for v := range vocab {
				var want float32
				for h := range hidden {
					want += emb[int(id)*hidden+h] * proj[h*vocab+v]
				}
				if d := math.Abs(float64(got[p*vocab+v] - want)); d > 1e-5 {
					t.Fatalf("shape %v: logits[%d][%d] = %v, want %v", shape, p, v, got[p*vocab+v], want)
				}
			}
		}
	}
	if _, err := r.Logits(context.Background(), []int64{0, vocab}, 1, 2); !errors.Is(err, ErrInput) {
		t.Errorf("token id %d: %v, want ErrInput", vocab, err)
	}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := r.Logits(context.Background(), ids, 2, 3); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("steady-state Logits allocates %v times per call, want 0", allocs)
	}
}

func TestCheckCausalLMGraph(t *testing.T) {
	ok := func() *GraphInfo {
		return &GraphInfo{
			Inputs:  []ValueInfo{{InputIDs, onnxInt64, []int64{-1, -1}}},
			Outputs: []ValueInfo{{OutputLogits, onnxFloat, []int64{-1, -1, 50257}}},
		}
	}
	tests := []struct {
		name   string
		edit   func(g *GraphInfo)
		wantOK bool
	}{
		{"contract", func(g *GraphInfo) {}, true},
		{"padded vocabulary differs", func(g *GraphInfo) { g.Outputs[0].Dims[2] = 50304 }, false},
		{"two inputs", func(g *GraphInfo) { g.Inputs = append(g.Inputs, ValueInfo{"attention_mask", onnxInt64, nil}) }, false},
		{"int32 ids", func(g *GraphInfo) { g.Inputs[0].ElemType = 6 }, false},
		{"float16 logits", func(g *GraphInfo) { g.Outputs[0].ElemType = 10 }, false},
		{"no logits", func(g *GraphInfo) { g.Outputs[0].Name = "output" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := ok()
			tt.edit(g)
			err := CheckCausalLMGraph(g, 50257)
			if (err == nil) != tt.wantOK || (err != nil && !errors.Is(err, ErrGraphMismatch)) {
				t.Fatalf("CheckCausalLMGraph = %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}
