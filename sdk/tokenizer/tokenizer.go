// Package tokenizer turns text into token ids and back for exported models,
// reading a HuggingFace tokenizer.json through github.com/sugarme/tokenizer.
//
//	tok, err := tokenizer.Load("models/sedd-small/tokenizer.json")
//	ids, err := tok.Encode("Hello world") // [15496 995] with GPT-2's tokenizer
//	text, err := tok.Decode(ids)          // "Hello world", byte for byte
//
// sugarme/tokenizer reads and checks the file; this package does what it
// gets wrong or leaves out: the byte-pair merges are applied here, lowest
// merge rank first and leftmost first among equal ranks, as HuggingFace's
// tokenizers and GPT-2's encoder apply them (sugarme's BPE can merge a word
// with a repeated pair, such as " 2000", differently); GPT-2's pre-token
// split is done here (see splitGPT2); added and special tokens such as
// <|endoftext|> are matched literally in the text and mapped to their ids
// (sugarme drops them); and decoding of byte-level vocabularies is done here,
// byte by byte, so that a character split across tokens, an emoji, or a
// sampled sequence that is not valid UTF-8 decodes to exactly its bytes.
package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	sugarme "github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrFormat marks a tokenizer.json this package cannot use.
	ErrFormat = kind.New(kind.ErrBadModel, "unsupported tokenizer file")
	// ErrUnknownID marks a token id outside the vocabulary.
	ErrUnknownID = kind.New(kind.ErrBadRequest, "token id outside the vocabulary")
	// ErrInvalidUTF8 marks text given to Encode that is not valid UTF-8.
	ErrInvalidUTF8 = kind.New(kind.ErrBadRequest, "text is not valid UTF-8")
)

// maxVocabSize bounds the token ids Load accepts. The largest vocabularies in
// use have about 2^18 entries; the bound keeps a corrupt id (say 2^62) from
// making Load allocate a table of that many entries.
const maxVocabSize = 1 << 22

// Tokenizer encodes and decodes text. It is safe for concurrent use.
type Tokenizer struct {
	mu sync.Mutex // sugarme's encoder is not documented as concurrency-safe
	tk *sugarme.Tokenizer
	// bpe merges words; it is also sugarme's model. It is nil for the BPE
	// options it does not implement (see newBPEModel), which leave sugarme's
	// model in place.
	bpe *bpeModel

	vocabSize int
	// tokens[id] is the vocabulary string of id ("" for ids with none).
	tokens []string
	// added lists added tokens (special or not) by literal text, longest
	// first, so that Encode prefers the longest match.
	added []addedToken
	// isAdded marks ids of added tokens, which decode to their literal text.
	isAdded map[int]bool
	// byteLevel is true when vocabulary strings use GPT-2's byte characters,
	// which Decode maps back to bytes itself.
	byteLevel bool
	// gpt2Split is true when the pre-tokenizer is GPT-2's ByteLevel split
	// without prefix space, which Encode does itself before calling the BPE
	// model (see splitGPT2).
	gpt2Split bool
}

type addedToken struct {
	Content string `json:"content"`
	ID      int    `json:"id"`
	Special bool   `json:"special"`
}

// maxFileSize bounds the size of a tokenizer.json file Load reads (GPT-2's is
// 1.4 MB, the largest published ones about 35 MB): parsing one takes about
// five times its size in memory.
const maxFileSize = 64 << 20

// Load reads a tokenizer.json file (of at most 64 MiB).
func Load(path string) (*Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxFileSize {
		return nil, fmt.Errorf("tokenizer: %s: %w: a regular file of at most %d bytes is needed (%v, %d bytes)", path, ErrFormat, maxFileSize, st.Mode().Type(), st.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse reads the contents of a tokenizer.json file; name says in messages
// which file it was.
func Parse(data []byte, name string) (*Tokenizer, error) {
	path := name
	var doc struct {
		AddedTokens []addedToken `json:"added_tokens"`
		Decoder     *struct {
			Type string `json:"type"`
		} `json:"decoder"`
		PreTokenizer *struct {
			Type           string `json:"type"`
			AddPrefixSpace bool   `json:"add_prefix_space"`
			UseRegex       *bool  `json:"use_regex"`
		} `json:"pre_tokenizer"`
		Normalizer json.RawMessage `json:"normalizer"`
		Model      *struct {
			Type string `json:"type"`
			bpeConfig
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w: %v", path, ErrFormat, err)
	}
	if doc.Model == nil || len(doc.Model.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: %s: %w: no model.vocab", path, ErrFormat)
	}
	if doc.Model.Type != "" && doc.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer: %s: %w: model type %q; only BPE is supported", path, ErrFormat, doc.Model.Type)
	}
	maxID := -1
	for s, id := range doc.Model.Vocab {
		if id < 0 || id >= maxVocabSize {
			return nil, fmt.Errorf("tokenizer: %s: %w: id %d for %q is outside [0, %d)", path, ErrFormat, id, s, maxVocabSize)
		}
		maxID = max(maxID, id)
	}
	for _, a := range doc.AddedTokens {
		if a.ID < 0 || a.ID >= maxVocabSize || a.Content == "" {
			return nil, fmt.Errorf("tokenizer: %s: %w: added token %q with id %d (ids must be in [0, %d))", path, ErrFormat, a.Content, a.ID, maxVocabSize)
		}
		maxID = max(maxID, a.ID)
	}
	// sugarme reads the file only once the ids are known to be sane.
	tk, err := fromData(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w: %v", path, ErrFormat, err)
	}
	t := &Tokenizer{tk: tk, isAdded: map[int]bool{}}
	switch bpe, err := newBPEModel(doc.Model.bpeConfig); {
	case errors.Is(err, errKeepSugarme):
	case err != nil:
		return nil, fmt.Errorf("tokenizer: %s: %w: %v", path, ErrFormat, err)
	default:
		t.bpe = bpe
		tk.WithModel(bpe)
	}
	t.byteLevel = doc.Decoder != nil && doc.Decoder.Type == "ByteLevel"
	pre := doc.PreTokenizer
	t.gpt2Split = t.byteLevel && pre != nil && pre.Type == "ByteLevel" && !pre.AddPrefixSpace &&
		(pre.UseRegex == nil || *pre.UseRegex) && (len(doc.Normalizer) == 0 || string(doc.Normalizer) == "null")

	t.vocabSize = maxID + 1
	t.tokens = make([]string, t.vocabSize)
	for s, id := range doc.Model.Vocab {
		t.tokens[id] = s
	}
	for _, a := range doc.AddedTokens {
		t.tokens[a.ID] = a.Content
		t.isAdded[a.ID] = true
		t.added = append(t.added, a)
	}
	slices.SortStableFunc(t.added, func(a, b addedToken) int { return len(b.Content) - len(a.Content) })
	if t.byteLevel {
		for id, s := range t.tokens {
			if t.isAdded[id] || s == "" {
				continue
			}
			for _, r := range s {
				if _, ok := byteOf(r); !ok {
					return nil, fmt.Errorf("tokenizer: %s: %w: vocabulary entry %q (id %d) is not made of byte-level characters", path, ErrFormat, s, id)
				}
			}
		}
	}
	return t, nil
}

// fromData calls sugarme's loader, turning its panics into errors.
func fromData(data []byte) (tk *sugarme.Tokenizer, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sugarme/tokenizer: %v", r)
		}
	}()
	return pretrained.FromReader(bytes.NewReader(data))
}

// VocabSize returns the number of token ids: one past the largest id of the
// vocabulary and the added tokens.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// specialTokens returns the special tokens' literal texts and ids.
func (t *Tokenizer) specialTokens() map[string]int {
	m := map[string]int{}
	for _, a := range t.added {
		if a.Special {
			m[a.Content] = a.ID
		}
	}
	return m
}

// tokenID returns the id of a vocabulary entry or added token, as written in
// tokenizer.json (byte-level entries use GPT-2's byte characters, "Ġ" for a
// space).
func (t *Tokenizer) tokenID(token string) (int, bool) {
	for _, a := range t.added {
		if a.Content == token {
			return a.ID, true
		}
	}
	id, ok := t.tk.TokenToId(token)
	return id, ok && id >= 0 && id < t.vocabSize
}

// Encode returns the token ids of text. Added tokens (such as <|endoftext|>)
// are recognised wherever their literal text occurs and become their own ids;
// the text between them is split into GPT-2's pre-tokens (for byte-level
// tokenizers, see splitGPT2) and merged by the BPE model. text must be valid
// UTF-8.
func (t *Tokenizer) Encode(text string) ([]int64, error) {
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("tokenizer: %w", ErrInvalidUTF8)
	}
	ids := []int64{}
	for len(text) > 0 {
		at, tok := t.nextAdded(text)
		if at < 0 {
			at = len(text)
		}
		if at > 0 {
			part, err := t.encodePlain(text[:at])
			if err != nil {
				return nil, err
			}
			for _, id := range part {
				ids = append(ids, int64(id))
			}
		}
		if at == len(text) {
			break
		}
		ids = append(ids, int64(tok.ID))
		text = text[at+len(tok.Content):]
	}
	return ids, nil
}

// nextAdded finds the earliest added token in text (the longest one at that
// position); at is -1 when there is none.
func (t *Tokenizer) nextAdded(text string) (at int, tok addedToken) {
	at = -1
	for _, a := range t.added {
		i := strings.Index(text, a.Content)
		if i >= 0 && (at < 0 || i < at) {
			at, tok = i, a
		}
	}
	return at, tok
}

func (t *Tokenizer) encodePlain(text string) (ids []int, err error) {
	if t.gpt2Split && t.bpe != nil {
		// The lock-free path: no sugarme code runs.
		ids, err = t.encodeGPT2(text, t.bpe.encodeWord)
	} else {
		ids, err = t.encodeSugarme(text)
	}
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if id < 0 || id >= t.vocabSize {
			return nil, fmt.Errorf("tokenizer: %w: the BPE model produced id %d for %q", ErrUnknownID, id, text)
		}
	}
	return ids, nil
}

// encodeGPT2 splits text into GPT-2's pre-tokens, writes each in GPT-2's byte
// characters and appends the ids that merge gives for it.
func (t *Tokenizer) encodeGPT2(text string, merge func(word string) ([]int, error)) ([]int, error) {
	var ids []int
	var buf []byte
	var err error
	splitGPT2(text, func(piece string) {
		if err != nil {
			return
		}
		buf = buf[:0]
		for i := 0; i < len(piece); i++ {
			buf = utf8.AppendRune(buf, byteRune[piece[i]])
		}
		var word []int
		if word, err = merge(string(buf)); err == nil {
			ids = append(ids, word...)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return ids, nil
}

// encodeSugarme encodes text with sugarme's pipeline, or, for GPT-2's split,
// with sugarme's BPE model (only for BPE options bpeModel does not implement).
func (t *Tokenizer) encodeSugarme(text string) (ids []int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			ids, err = nil, fmt.Errorf("tokenizer: sugarme/tokenizer failed on %q: %v", text, r)
		}
	}()
	if t.gpt2Split {
		model := t.tk.GetModel()
		return t.encodeGPT2(text, func(word string) ([]int, error) {
			toks, err := model.Tokenize(word)
			if err != nil {
				return nil, err
			}
			ids := make([]int, len(toks))
			for i, tk := range toks {
				ids[i] = tk.Id
			}
			return ids, nil
		})
	}
	enc, err := t.tk.EncodeSingle(text, false)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return slices.Clone(enc.GetIds()), nil
}

// Decode returns the text of ids. For byte-level vocabularies (GPT-2 and the
// byte tokenizer) the result is exactly the bytes the tokens stand for, even
// when that is not valid UTF-8; added tokens decode to their literal text. An
// id outside [0, VocabSize()) is an error wrapping ErrUnknownID.
func (t *Tokenizer) Decode(ids []int64) (string, error) {
	for i, id := range ids {
		if id < 0 || id >= int64(t.vocabSize) || (t.tokens[id] == "" && !t.isAdded[int(id)]) {
			return "", fmt.Errorf("tokenizer: %w: ids[%d] = %d (vocabulary size %d)", ErrUnknownID, i, id, t.vocabSize)
		}
	}
	if !t.byteLevel {
		plain := make([]int, len(ids))
		for i, id := range ids {
			plain[i] = int(id)
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.tk.Decode(plain, false), nil
	}
	var b strings.Builder
	for _, id := range ids {
		s := t.tokens[id]
		if t.isAdded[int(id)] {
			b.WriteString(s)
			continue
		}
		for _, r := range s {
			c, _ := byteOf(r) // checked in Load
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// byteRune is GPT-2's bytes-to-unicode table: the printable Latin-1 bytes
// '!'..'~', '¡'..'¬' and '®'..'ÿ' stand for themselves; the other 68 byte
// values, in increasing order, are written as U+0100 onwards.
var byteRune = func() (t [256]rune) {
	n := 0
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(0x100 + n)
			n++
		}
	}
	return t
}()

// byteOf inverts byteRune.
func byteOf(r rune) (byte, bool) {
	switch {
	case r < 0 || r >= 0x100+68:
		return 0, false
	case r < 0x100:
		return byte(r), byteRune[r] == r
	}
	k := int(r - 0x100) // k-th byte value that is not printable
	for b, br := range byteRune {
		if br >= 0x100 {
			if k == 0 {
				return byte(b), true
			}
			k--
		}
	}
	return 0, false
}
