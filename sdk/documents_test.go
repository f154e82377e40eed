package sdk_test

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/internal/likelihood"
	"github.com/sedd-go/sedd/sdk/tokenizer"
)

func TestSplitDocuments(t *testing.T) {
	const eot = "<|endoftext|>"
	for _, tc := range []struct {
		name, text, sep string
		want            []string
	}{
		{"two documents", "one\n<|endoftext|>\ntwo\n", eot, []string{"one", "two"}},
		{"separator on the first line", "<|endoftext|>\none\n<|endoftext|>\ntwo", eot, []string{"one", "two"}},
		{"separator on the last line", "one\n<|endoftext|>\ntwo\n<|endoftext|>", eot, []string{"one", "two"}},
		{"separator on the last line with a line end", "one\n<|endoftext|>\n", eot, []string{"one"}},
		{"two separators in a row", "one\n<|endoftext|>\n<|endoftext|>\ntwo\n", eot, []string{"one", "two"}},
		{"blank lines around a separator", "one\n\n\n<|endoftext|>\n\ntwo\n\n", eot, []string{"one", "two"}},
		{"inner lines and blank lines kept", "a\n\nb\n<|endoftext|>\nc", eot, []string{"a\n\nb", "c"}},
		{"CRLF line ends", "one\r\nmore\r\n<|endoftext|>\r\ntwo\r\n", eot, []string{"one\r\nmore", "two"}},
		{"no separator", "\njust one\ndocument\n", eot, []string{"just one\ndocument"}},
		{"separator inside a line is text", "a <|endoftext|> b\n<|endoftext|> \nc", eot, []string{"a <|endoftext|> b\n<|endoftext|> \nc"}},
		{"leading spaces are kept", "  indented\n<|endoftext|>\n  too", eot, []string{"  indented", "  too"}},
		{"only separators", "<|endoftext|>\n<|endoftext|>\n", eot, nil},
		{"empty text", "", eot, nil},
		{"only line breaks", "\n\r\n\n", eot, nil},
		{"empty separator matches no line", "a\n\nb\n", "", []string{"a\n\nb"}},
		{"another separator", "a\n</s>\nb", "</s>", []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sdk.SplitDocuments(tc.text, tc.sep); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("SplitDocuments(%q, %q) = %q, want %q", tc.text, tc.sep, got, tc.want)
			}
		})
	}
}

func TestInfoEOS(t *testing.T) {
	for _, tc := range []struct {
		name, dir, want string
		ok              bool
	}{
		{"BPE with <|endoftext|>", shippedSEDD, "<|endoftext|>", true},
		{"byte tokenizer without one", tinyAbsorb, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := open(t, tc.dir).Info().EOS; got != tc.want || (got != "") != tc.ok {
				t.Errorf("Info().EOS = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSplitDocumentsOnTestSplit checks, when the training data is present
// (data/ is not shipped), that splitting data/test.txt at <|endoftext|> lines
// and joining the tokenized documents as Model.Evaluate does puts every
// <|endoftext|> exactly where the pre-tokenized test stream has it after its
// leading one: the same documents, the same token count, hence the same
// windows as the blocks export/train/evaluate_sedd.py scores. Every token
// must match too: the Go tokenizer applies merges in the order the Python
// side's BPE does (the one that tokenized data/), including in runs of a
// repeated character (" 2000", "---").
func TestSplitDocumentsOnTestSplit(t *testing.T) {
	text, err := os.ReadFile("../data/test.txt")
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("no data/test.txt: run export/train/reproduce.sh")
	} else if err != nil {
		t.Fatal(err)
	}
	want := readUint16Npy(t, "../data/test.ids.npy")
	tok, err := tokenizer.Load(filepath.Join(shippedSEDD, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	eosIDs, err := tok.Encode("<|endoftext|>")
	if err != nil || len(eosIDs) != 1 {
		t.Fatalf("the shipped tokenizer has no <|endoftext|> token: %v %v", eosIDs, err)
	}
	eos := eosIDs[0]
	var docs [][]int64
	for _, d := range sdk.SplitDocuments(string(text), "<|endoftext|>") {
		ids, err := tok.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, ids)
	}
	got := likelihood.JoinDocuments(docs, eos)
	if len(want) == 0 || want[0] != eos {
		t.Fatalf("test.ids.npy does not start with <|endoftext|>")
	}
	want = want[1:]
	if len(got) != len(want) {
		t.Fatalf("%d documents, %d tokens, want %d tokens", len(docs), len(got), len(want))
	}
	differ := 0
	for i := range got {
		if (got[i] == eos) != (want[i] == eos) {
			t.Fatalf("token %d: got %d, want %d: the documents do not line up", i, got[i], want[i])
		}
		if got[i] != want[i] {
			if differ < 10 {
				t.Errorf("token %d: got %d, want %d", i, got[i], want[i])
			}
			differ++
		}
	}
	if differ > 0 {
		t.Errorf("%d of %d tokens differ from test.ids.npy", differ, len(got))
	}
}

// readUint16Npy reads a one-dimensional little-endian uint16 .npy file.
func readUint16Npy(t *testing.T, path string) []int64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 10 || string(raw[:6]) != "\x93NUMPY" {
		t.Fatalf("%s: not a .npy file", path)
	}
	headerLen, off := int(binary.LittleEndian.Uint16(raw[8:10])), 10
	if raw[6] >= 2 {
		headerLen, off = int(binary.LittleEndian.Uint32(raw[8:12])), 12
	}
	header := string(raw[off : off+headerLen])
	if !strings.Contains(header, "'<u2'") || !strings.Contains(header, "'fortran_order': False") {
		t.Fatalf("%s: want a little-endian uint16 array, header %s", path, header)
	}
	body := raw[off+headerLen:]
	ids := make([]int64, len(body)/2)
	for i := range ids {
		ids[i] = int64(binary.LittleEndian.Uint16(body[2*i:]))
	}
	return ids
}
