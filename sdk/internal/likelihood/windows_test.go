package likelihood

import (
	"errors"
	"reflect"
	"testing"
)

func TestWindows(t *testing.T) {
	seq := func(n int) []int64 {
		s := make([]int64, n)
		for i := range s {
			s[i] = int64(i)
		}
		return s
	}
	tests := []struct {
		name   string
		stream []int64
		length int
		last   LastWindow
		want   [][]int64
	}{
		{"exact multiple", seq(6), 3, KeepShort, [][]int64{{0, 1, 2}, {3, 4, 5}}},
		{"short last window kept at its own length", seq(7), 3, KeepShort, [][]int64{{0, 1, 2}, {3, 4, 5}, {6}}},
		{"short last window dropped", seq(7), 3, DropShort, [][]int64{{0, 1, 2}, {3, 4, 5}}},
		{"text shorter than a window kept", seq(2), 5, KeepShort, [][]int64{{0, 1}}},
		{"text shorter than a window dropped", seq(2), 5, DropShort, nil},
		{"empty stream", nil, 4, KeepShort, nil},
		{"length 1", seq(3), 1, KeepShort, [][]int64{{0}, {1}, {2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Windows(tc.stream, tc.length, tc.last)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			// Windows are views without spare capacity: appending to one
			// cannot overwrite the next.
			for _, w := range got {
				if cap(w) != len(w) {
					t.Errorf("window %v has capacity %d", w, cap(w))
				}
			}
		})
	}
	for _, bad := range []struct {
		name   string
		length int
		last   LastWindow
	}{{"zero length", 0, KeepShort}, {"negative length", -1, KeepShort}, {"unknown rule", 3, LastWindow(9)}} {
		t.Run(bad.name, func(t *testing.T) {
			if _, err := Windows(seq(4), bad.length, bad.last); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestJoinDocuments(t *testing.T) {
	tests := []struct {
		name string
		docs [][]int64
		eos  int64
		want []int64
	}{
		{"eos after every document", [][]int64{{1, 2}, {3}, {4, 5}}, 9, []int64{1, 2, 9, 3, 9, 4, 5, 9}},
		{"no separator", [][]int64{{1, 2}, {3}}, -1, []int64{1, 2, 3}},
		{"empty document still ends with eos", [][]int64{{1}, {}}, 0, []int64{1, 0, 0}},
		{"no documents", nil, 9, []int64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := JoinDocuments(tc.docs, tc.eos); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestShortWindowEvaluatedAtItsLength(t *testing.T) {
	// The kept short window is scored at its own length: its bound counts
	// exactly its tokens, and the network is called with that length.
	stream := corpus(5, 11)[0]
	windows, err := Windows(stream, 4, KeepShort)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{inner: newIndependent(absorb5, 4, 5, 1)}
	res, err := evaluateForTest(rec, windows)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tokens != 11 || res.Sequences[2].Tokens != 3 {
		t.Errorf("tokens %d, last window %d; want 11 and 3", res.Tokens, res.Sequences[2].Tokens)
	}
	if rec.shapes[0] != [2]int{2, 3} {
		t.Errorf("first call %v, want the short window alone at length 3", rec.shapes[0])
	}
}
