package likelihood

// LastWindow says what Windows does with a final window shorter than the
// window length.
type LastWindow int

const (
	// KeepShort keeps the final short window; Evaluate scores it at its own,
	// shorter length. It is the zero value. Every token of the text is then
	// counted exactly once, and a text shorter than one window still gets a
	// bound. The network accepts any length, but it was trained at one: a
	// short window is slightly out of its training distribution, so its bound
	// tends to be a little looser (it is reported on its own in
	// Result.Sequences and affects at most one window per stream).
	// Padding instead would either score tokens that are not in the text or
	// condition on them, which changes the quantity being bounded.
	KeepShort LastWindow = iota
	// DropShort drops the final short window, as the reference's data
	// pipeline (group_texts in data.py) does: use it to reproduce the paper's
	// protocol exactly. A text shorter than one window yields no windows.
	DropShort
)

// String returns "keep" or "drop".
func (l LastWindow) String() string {
	switch l {
	case KeepShort:
		return "keep"
	case DropShort:
		return "drop"
	}
	return "LastWindow(?)"
}

// Windows cuts a token stream into consecutive, non-overlapping windows of
// length tokens, the paper's protocol (no sliding window: each token is scored
// once, with only the context of its own window). The last window, when
// shorter, is kept or dropped according to last. The windows share memory
// with stream. Windows returns an error wrapping ErrInvalidConfig if length ≤
// 0 or last is unknown.
func Windows(stream []int64, length int, last LastWindow) ([][]int64, error) {
	if length <= 0 {
		return nil, invalidf("window length = %d, must be ≥ 1", length)
	}
	if last != KeepShort && last != DropShort {
		return nil, invalidf("unknown last-window rule %d", int(last))
	}
	var out [][]int64
	for start := 0; start < len(stream); start += length {
		end := start + length
		if end > len(stream) {
			if last == DropShort {
				break
			}
			end = len(stream)
		}
		out = append(out, stream[start:end:end])
	}
	return out, nil
}

// JoinDocuments concatenates tokenized documents into one stream for Windows.
// When eos ≥ 0 it is appended after every document, the last one included, as
// the reference's data pipeline does (each document ends with GPT-2's
// <|endoftext|>, so the model has learnt to predict it there, and the bound
// counts it as a token); a negative eos joins the documents directly.
// The result is a new slice.
func JoinDocuments(docs [][]int64, eos int64) []int64 {
	n := 0
	for _, d := range docs {
		n += len(d)
		if eos >= 0 {
			n++
		}
	}
	out := make([]int64, 0, n)
	for _, d := range docs {
		out = append(out, d...)
		if eos >= 0 {
			out = append(out, eos)
		}
	}
	return out
}
