package onnxrt

import (
	"fmt"
	"io"
	"os"
)

// This file reads the parts of an ONNX file the runtime checks before handing
// it to ONNX Runtime: the graph's inputs and outputs with their types and
// shapes, the opset imports, and node inputs that are empty strings. It decodes
// the protobuf wire format directly (no generated code, no dependency) and
// reads the file through io.ReaderAt in 64 KiB blocks, jumping over
// initializers, so scanning a multi-gigabyte model reads little more than its
// node list. Malformed input yields an error wrapping ErrNotONNX, never a
// panic.

// ONNX TensorProto.DataType values the runtime checks.
const (
	onnxFloat = 1
	onnxInt64 = 7
)

// crashingEmptyInput lists operators for which an empty-string input makes
// ONNX Runtime 1.24–1.30 crash inside session creation (measured with the
// LayerNormalization that torch 1.13 writes at opset 17).
var crashingEmptyInput = map[string]bool{"LayerNormalization": true}

// GraphInfo is what ScanONNX learns about a model file.
type GraphInfo struct {
	IRVersion int64
	// Opsets maps operator-set domains ("" is the default ONNX domain) to
	// versions.
	Opsets  map[string]int64
	Inputs  []ValueInfo
	Outputs []ValueInfo
	// Nodes is the number of nodes of the main graph.
	Nodes int
	// EmptyInputs lists every node input of the main graph that is an empty
	// string (an omitted optional input).
	EmptyInputs []EmptyInput
}

// ValueInfo describes one graph input or output.
type ValueInfo struct {
	Name string
	// ElemType is the ONNX TensorProto.DataType (1 float32, 7 int64, ...), or
	// 0 when the value is not a tensor or its type is not recorded.
	ElemType int32
	// Dims holds one entry per axis: a size ≥ 0, or -1 for a dynamic axis.
	// Nil when the shape is not recorded (unknown rank).
	Dims []int64
}

// EmptyInput locates an empty-string input of a node.
type EmptyInput struct {
	Node   string
	OpType string
	Index  int
}

// ScanONNX reads the graph description of the ONNX file at path.
func ScanONNX(path string) (*GraphInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ErrNotONNX)
	}
	g, err := Scan(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Scan reads the graph description of an ONNX model of size bytes from r.
func Scan(r io.ReaderAt, size int64) (*GraphInfo, error) {
	return scanModel(newBlockReader(r), size)
}

// blockReader caches one block of an io.ReaderAt, since the scanner reads
// many small neighbouring pieces.
type blockReader struct {
	r     io.ReaderAt
	buf   []byte
	start int64
	n     int
}

func newBlockReader(r io.ReaderAt) *blockReader {
	return &blockReader{r: r, buf: make([]byte, 64<<10), start: -1}
}

// readAt fills p from offset off; the caller has checked off+len(p) against the
// file size.
func (b *blockReader) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		if b.start < 0 || off < b.start || off >= b.start+int64(b.n) {
			b.start = off
			n, err := b.r.ReadAt(b.buf, off)
			b.n = n
			if n == 0 {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				b.start = -1
				return err
			}
		}
		k := copy(p, b.buf[off-b.start:b.n])
		p, off = p[k:], off+int64(k)
	}
	return nil
}

// field is one protobuf field: number, wire type, and either a varint value
// or the byte range of a length-delimited payload.
type field struct {
	num      int
	wire     int
	varint   uint64
	off, len int64
}

const (
	wireVarint = 0
	wireI64    = 1
	wireLen    = 2
	wireI32    = 5
)

// maxName bounds the strings the scanner copies (names, op types).
const maxName = 1 << 20

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotONNX, fmt.Sprintf(format, args...))
}

// walk calls fn for every field of the message in [off, end).
func walk(r *blockReader, off, end int64, fn func(f field) error) error {
	var tmp [10]byte
	varint := func() (uint64, error) {
		n := min(int64(len(tmp)), end-off)
		if n <= 0 {
			return 0, corrupt("truncated at byte %d", off)
		}
		if err := r.readAt(tmp[:n], off); err != nil {
			return 0, corrupt("read at byte %d: %v", off, err)
		}
		var v uint64
		for i := int64(0); i < n; i++ {
			c := tmp[i]
			if i == 9 && c > 1 {
				return 0, corrupt("varint overflow at byte %d", off)
			}
			v |= uint64(c&0x7f) << (7 * i)
			if c < 0x80 {
				off += i + 1
				return v, nil
			}
		}
		return 0, corrupt("truncated varint at byte %d", off)
	}
	for off < end {
		key, err := varint()
		if err != nil {
			return err
		}
		f := field{num: int(key >> 3), wire: int(key & 7)}
		if f.num <= 0 || key>>3 > 1<<29 {
			return corrupt("invalid field number %d", key>>3)
		}
		switch f.wire {
		case wireVarint:
			if f.varint, err = varint(); err != nil {
				return err
			}
		case wireI64, wireI32:
			size := int64(8)
			if f.wire == wireI32 {
				size = 4
			}
			if end-off < size {
				return corrupt("truncated fixed-size field %d", f.num)
			}
			off += size
			continue
		case wireLen:
			l, err := varint()
			if err != nil {
				return err
			}
			if l > uint64(end-off) {
				return corrupt("field %d claims %d bytes but only %d remain (truncated file?)", f.num, l, end-off)
			}
			f.off, f.len = off, int64(l)
			off += int64(l)
		default:
			return corrupt("unsupported wire type %d for field %d", f.wire, f.num)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func readString(r *blockReader, f field) (string, error) {
	if f.wire != wireLen {
		return "", corrupt("field %d: want a string, got wire type %d", f.num, f.wire)
	}
	if f.len > maxName {
		return "", corrupt("field %d: string of %d bytes", f.num, f.len)
	}
	b := make([]byte, f.len)
	if err := r.readAt(b, f.off); err != nil {
		return "", corrupt("read: %v", err)
	}
	return string(b), nil
}

func wantLen(f field) error {
	if f.wire != wireLen {
		return corrupt("field %d: want a message, got wire type %d", f.num, f.wire)
	}
	return nil
}

func wantVarint(f field) error {
	if f.wire != wireVarint {
		return corrupt("field %d: want an integer, got wire type %d", f.num, f.wire)
	}
	return nil
}

// ModelProto: 1 ir_version, 7 graph, 8 opset_import.
func scanModel(r *blockReader, size int64) (*GraphInfo, error) {
	if size == 0 {
		return nil, corrupt("empty file")
	}
	g := &GraphInfo{Opsets: map[string]int64{}}
	graphs := 0
	err := walk(r, 0, size, func(f field) error {
		switch f.num {
		case 1:
			if err := wantVarint(f); err != nil {
				return err
			}
			g.IRVersion = int64(f.varint)
		case 7:
			if err := wantLen(f); err != nil {
				return err
			}
			graphs++
			return scanGraph(r, f, g)
		case 8:
			if err := wantLen(f); err != nil {
				return err
			}
			return scanOpset(r, f, g)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if graphs != 1 || g.IRVersion <= 0 {
		return nil, corrupt("no model graph or IR version (not an ONNX model?)")
	}
	return g, nil
}

// OperatorSetIdProto: 1 domain, 2 version.
func scanOpset(r *blockReader, f field, g *GraphInfo) error {
	var domain string
	var version int64
	err := walk(r, f.off, f.off+f.len, func(f field) error {
		var err error
		switch f.num {
		case 1:
			domain, err = readString(r, f)
		case 2:
			if err = wantVarint(f); err == nil {
				version = int64(f.varint)
			}
		}
		return err
	})
	g.Opsets[domain] = version
	return err
}

// GraphProto: 1 node, 11 input, 12 output (5 initializer is skipped).
func scanGraph(r *blockReader, f field, g *GraphInfo) error {
	return walk(r, f.off, f.off+f.len, func(f field) error {
		switch f.num {
		case 1:
			if err := wantLen(f); err != nil {
				return err
			}
			g.Nodes++
			return scanNode(r, f, g)
		case 11, 12:
			if err := wantLen(f); err != nil {
				return err
			}
			v, err := scanValueInfo(r, f)
			if err != nil {
				return err
			}
			if f.num == 11 {
				g.Inputs = append(g.Inputs, v)
			} else {
				g.Outputs = append(g.Outputs, v)
			}
		}
		return nil
	})
}

// NodeProto: 1 input, 3 name, 4 op_type.
func scanNode(r *blockReader, f field, g *GraphInfo) error {
	var name, op string
	var empty []int
	inputs := 0
	err := walk(r, f.off, f.off+f.len, func(f field) error {
		var err error
		switch f.num {
		case 1:
			if err = wantLen(f); err == nil && f.len == 0 {
				empty = append(empty, inputs)
			}
			inputs++
		case 3:
			name, err = readString(r, f)
		case 4:
			op, err = readString(r, f)
		}
		return err
	})
	for _, i := range empty {
		g.EmptyInputs = append(g.EmptyInputs, EmptyInput{Node: name, OpType: op, Index: i})
	}
	return err
}

// ValueInfoProto: 1 name, 2 type. TypeProto: 1 tensor_type.
// TypeProto.Tensor: 1 elem_type, 2 shape. TensorShapeProto: 1 dim.
// Dimension: 1 dim_value, 2 dim_param.
func scanValueInfo(r *blockReader, f field) (ValueInfo, error) {
	var v ValueInfo
	err := walk(r, f.off, f.off+f.len, func(f field) error {
		switch f.num {
		case 1:
			var err error
			v.Name, err = readString(r, f)
			return err
		case 2:
			if err := wantLen(f); err != nil {
				return err
			}
			return walk(r, f.off, f.off+f.len, func(f field) error {
				if f.num != 1 {
					return nil
				}
				if err := wantLen(f); err != nil {
					return err
				}
				return scanTensorType(r, f, &v)
			})
		}
		return nil
	})
	return v, err
}

func scanTensorType(r *blockReader, f field, v *ValueInfo) error {
	return walk(r, f.off, f.off+f.len, func(f field) error {
		switch f.num {
		case 1:
			if err := wantVarint(f); err != nil {
				return err
			}
			v.ElemType = int32(f.varint)
		case 2:
			if err := wantLen(f); err != nil {
				return err
			}
			v.Dims = []int64{}
			return walk(r, f.off, f.off+f.len, func(f field) error {
				if f.num != 1 {
					return nil
				}
				if err := wantLen(f); err != nil {
					return err
				}
				d := int64(-1)
				err := walk(r, f.off, f.off+f.len, func(f field) error {
					if f.num == 1 {
						if err := wantVarint(f); err != nil {
							return err
						}
						d = int64(f.varint)
					}
					return nil
				})
				v.Dims = append(v.Dims, d)
				return err
			})
		}
		return nil
	})
}

// checkEmptyInputs refuses graphs with empty inputs on operators that crash
// ONNX Runtime.
func checkEmptyInputs(g *GraphInfo) error {
	for _, e := range g.EmptyInputs {
		if crashingEmptyInput[e.OpType] {
			return &GraphError{Err: ErrEmptyNodeInput, Detail: fmt.Sprintf(
				"node %q (%s) has an empty-string input %d, which crashes ONNX Runtime 1.24–1.30 during session creation; "+
					"re-export the model with export/export.py, which strips such inputs", e.Node, e.OpType, e.Index)}
		}
	}
	return nil
}
