package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// splitGPT2 splits text into GPT-2's pre-tokens, the matches of
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// with Unicode \s, as OpenAI's encoder and HuggingFace's ByteLevel
// pre-tokenizer apply it. Go's regexp has no look-ahead and its \s is ASCII
// only (so sugarme/tokenizer splits text with a no-break space differently);
// this hand-written scanner follows the pattern's leftmost-alternative
// semantics instead. It calls yield with each piece in order.
func splitGPT2(text string, yield func(piece string)) {
	for len(text) > 0 {
		n := gpt2Match(text)
		yield(text[:n])
		text = text[n:]
	}
}

// gpt2Match returns the length of the pre-token at the start of text (> 0).
func gpt2Match(s string) int {
	for _, c := range []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
		if len(s) >= len(c) && s[:len(c)] == c {
			return len(c)
		}
	}
	// " ?X+" for the three classes: an optional single ASCII space, then a
	// run of one class.
	start := 0
	if s[0] == ' ' {
		start = 1
	}
	if start < len(s) {
		r, _ := utf8.DecodeRuneInString(s[start:])
		if cls := classOf(r); cls != classSpace {
			return start + runOf(s[start:], cls)
		}
	}
	// \s+(?!\S) then \s+: a whitespace run, leaving its last character for
	// the next piece when a non-space follows, unless the run is a single
	// character.
	run := runOf(s, classSpace)
	if run == len(s) {
		return run
	}
	_, last := utf8.DecodeLastRuneInString(s[:run])
	if run > last {
		return run - last
	}
	return run
}

const (
	classLetter = iota
	classNumber
	classOther
	classSpace
)

func classOf(r rune) int {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// runOf returns the byte length of the run of class cls at the start of s.
func runOf(s string, cls int) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if classOf(r) != cls {
			break
		}
		n += size
	}
	return n
}
