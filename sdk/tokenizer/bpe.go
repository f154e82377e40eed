package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	sugarme "github.com/sugarme/tokenizer"
)

// bpeModel applies a BPE model's merges to pre-tokenized words the way
// HuggingFace's tokenizers and OpenAI's GPT-2 encoder do: start from one
// symbol per character and repeatedly merge the adjacent pair with the lowest
// merge rank, the leftmost one when the same pair occurs more than once, until
// no adjacent pair has a merge.
//
// sugarme/tokenizer's BPE breaks ties between equal ranks in heap order
// rather than by position, so a word with a repeated pair (" 2000", "---")
// can come out merged differently; this model replaces it. It implements
// sugarme's Model interface so that sugarme's own pipeline (used for
// tokenizers whose pre-tokenizer this package does not do itself) merges the
// same way. It is safe for concurrent use.
type bpeModel struct {
	vocab  map[string]int
	tokens map[int]string
	// chars maps the single-character vocabulary entries to their ids.
	chars map[rune]int
	// merges maps a pair of ids (pairKey) to its rank and merged id.
	merges map[uint64]merge
	// unk is the id of the unknown token, -1 when there is none.
	unk int

	mu    sync.RWMutex
	cache map[string][]int
}

type merge struct {
	rank, id int
}

const (
	// cacheCapacity bounds the words bpeModel remembers; once it is full,
	// new words are merged every time. A few tens of thousands of distinct
	// words cover most of any English text.
	cacheCapacity = 1 << 15
	// maxCachedWord is the longest word, in bytes, that is cached.
	maxCachedWord = 64
)

func pairKey(a, b int) uint64 { return uint64(a)<<32 | uint64(uint32(b)) }

// bpeConfig is the "model" object of a BPE tokenizer.json.
type bpeConfig struct {
	Vocab                   map[string]int    `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
}

// errKeepSugarme marks a BPE configuration that newBPEModel does not
// implement (dropout, subword prefixes or suffixes); such tokenizers keep
// sugarme's model.
var errKeepSugarme = errors.New("BPE options not implemented here")

// newBPEModel builds the model of cfg. Merges are accepted in both of
// tokenizer.json's forms, "a b" strings and ["a", "b"] pairs; a merge's rank
// is its index in the list (a pair listed twice keeps its later rank, as in
// HuggingFace's and GPT-2's loaders). A merge whose parts are not both in the
// vocabulary can never apply and is ignored, as sugarme ignores it; a merge
// whose result is not in the vocabulary is an error.
func newBPEModel(cfg bpeConfig) (*bpeModel, error) {
	if (cfg.Dropout != nil && *cfg.Dropout > 0) ||
		(cfg.ContinuingSubwordPrefix != nil && *cfg.ContinuingSubwordPrefix != "") ||
		(cfg.EndOfWordSuffix != nil && *cfg.EndOfWordSuffix != "") {
		return nil, errKeepSugarme
	}
	m := &bpeModel{
		vocab:  cfg.Vocab,
		tokens: make(map[int]string, len(cfg.Vocab)),
		chars:  map[rune]int{},
		merges: make(map[uint64]merge, len(cfg.Merges)),
		unk:    -1,
		cache:  map[string][]int{},
	}
	for s, id := range cfg.Vocab {
		m.tokens[id] = s
		if r, n := utf8.DecodeRuneInString(s); n == len(s) && r != utf8.RuneError {
			m.chars[r] = id
		}
	}
	if cfg.UnkToken != nil {
		if id, ok := cfg.Vocab[*cfg.UnkToken]; ok {
			m.unk = id
		}
	}
	for rank, raw := range cfg.Merges {
		var a, b string
		var s string
		var pair []string
		if err := json.Unmarshal(raw, &s); err == nil {
			parts := strings.Split(s, " ")
			if len(parts) != 2 {
				return nil, fmt.Errorf("merge %d (%q) is not two tokens separated by a space", rank, s)
			}
			a, b = parts[0], parts[1]
		} else if err := json.Unmarshal(raw, &pair); err == nil && len(pair) == 2 {
			a, b = pair[0], pair[1]
		} else {
			return nil, fmt.Errorf("merge %d is %s, want \"a b\" or [\"a\", \"b\"]", rank, raw)
		}
		ia, okA := cfg.Vocab[a]
		ib, okB := cfg.Vocab[b]
		if !okA || !okB {
			continue
		}
		id, ok := cfg.Vocab[a+b]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", rank, a, b, a+b)
		}
		m.merges[pairKey(ia, ib)] = merge{rank: rank, id: id}
	}
	return m, nil
}

// symbol is one symbol of a word being merged: its id, the byte offset of its
// first character, and its neighbours' indices (-1 for none). Merged-away
// symbols have id -1.
type symbol struct {
	id, start, prev, next int
}

// candidate is a possible merge of the symbol at pos with its right
// neighbour. Candidates are ordered by rank, then by position.
type candidate struct {
	rank, pos int
}

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || (c.rank == d.rank && c.pos < d.pos)
}

// mergeWord returns word's symbols after all merges (only the live ones, in
// order).
func (m *bpeModel) mergeWord(word string) ([]symbol, error) {
	syms := make([]symbol, 0, len(word))
	for i, r := range word {
		id, ok := m.chars[r]
		if !ok {
			if m.unk < 0 {
				return nil, fmt.Errorf("character %q is not in the vocabulary and there is no unknown token", r)
			}
			id = m.unk
		}
		n := len(syms)
		syms = append(syms, symbol{id: id, start: i, prev: n - 1, next: n + 1})
	}
	if len(syms) == 0 {
		return syms, nil
	}
	syms[len(syms)-1].next = -1

	var queue heap
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			queue.push(candidate{rank: mg.rank, pos: i})
		}
	}
	for len(queue) > 0 {
		c := queue.pop()
		left := &syms[c.pos]
		if left.id < 0 || left.next < 0 {
			continue
		}
		right := &syms[left.next]
		mg, ok := m.merges[pairKey(left.id, right.id)]
		if !ok || mg.rank != c.rank {
			continue // the pair this candidate was made for has changed
		}
		left.id = mg.id
		left.next = right.next
		right.id = -1
		if left.next >= 0 {
			syms[left.next].prev = c.pos
			if nm, ok := m.merges[pairKey(left.id, syms[left.next].id)]; ok {
				queue.push(candidate{rank: nm.rank, pos: c.pos})
			}
		}
		if left.prev >= 0 {
			if nm, ok := m.merges[pairKey(syms[left.prev].id, left.id)]; ok {
				queue.push(candidate{rank: nm.rank, pos: left.prev})
			}
		}
	}
	live := syms[:0]
	for _, s := range syms {
		if s.id >= 0 {
			live = append(live, s)
		}
	}
	return live, nil
}

// encodeWord returns the ids of word, a string of vocabulary characters.
// The returned slice is shared with the cache and must not be modified.
func (m *bpeModel) encodeWord(word string) ([]int, error) {
	m.mu.RLock()
	ids, ok := m.cache[word]
	m.mu.RUnlock()
	if ok {
		return ids, nil
	}
	syms, err := m.mergeWord(word)
	if err != nil {
		return nil, err
	}
	ids = make([]int, len(syms))
	for i, s := range syms {
		ids[i] = s.id
	}
	if len(word) <= maxCachedWord {
		m.mu.Lock()
		if len(m.cache) < cacheCapacity {
			m.cache[word] = ids
		}
		m.mu.Unlock()
	}
	return ids, nil
}

// Tokenize implements sugarme's Model: the tokens of sequence with their
// byte offsets in it.
func (m *bpeModel) Tokenize(sequence string) ([]sugarme.Token, error) {
	syms, err := m.mergeWord(sequence)
	if err != nil {
		return nil, err
	}
	toks := make([]sugarme.Token, len(syms))
	for i, s := range syms {
		end := len(sequence)
		if i+1 < len(syms) {
			end = syms[i+1].start
		}
		toks[i] = sugarme.Token{Id: s.id, Value: m.tokens[s.id], Offsets: []int{s.start, end}}
	}
	return toks, nil
}

// TokenToId implements sugarme's Model.
func (m *bpeModel) TokenToId(token string) (int, bool) {
	id, ok := m.vocab[token]
	return id, ok
}

// IdToToken implements sugarme's Model.
func (m *bpeModel) IdToToken(id int) (string, bool) {
	s, ok := m.tokens[id]
	return s, ok
}

// GetVocab implements sugarme's Model. The map must not be modified.
func (m *bpeModel) GetVocab() map[string]int { return m.vocab }

// GetVocabSize implements sugarme's Model.
func (m *bpeModel) GetVocabSize() int { return len(m.vocab) }

// Save implements sugarme's Model; saving is not supported.
func (m *bpeModel) Save(string, ...string) error {
	return errors.New("tokenizer: saving a BPE model is not supported")
}

// heap is a binary min-heap of candidates.
type heap []candidate

func (h *heap) push(c candidate) {
	*h = append(*h, c)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if !q[i].less(q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *heap) pop() candidate {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for i := 0; ; {
		l, r, least := 2*i+1, 2*i+2, i
		if l < len(q) && q[l].less(q[least]) {
			least = l
		}
		if r < len(q) && q[r].less(q[least]) {
			least = r
		}
		if least == i {
			break
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
	*h = q
	return top
}
