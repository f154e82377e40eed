package sdk

import (
	"context"
	"fmt"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// Infill fills the mask spans of an infill template (see ParseTemplate):
// "[MASK]" is one generated token, "[MASK:n]" is n, and every literal piece of
// text is tokenized and kept in place in every sample.
//
// The template occupies the first positions of a sequence of req.Length
// tokens (0 means the trained length), so the network sees the length it was
// trained on. When the template is shorter, the model's end-of-text token (if
// its tokenizer has one) is pinned right after it and the remaining positions
// are generated freely and discarded: the returned samples hold exactly the
// template's tokens. req.Prefix, req.Suffix and req.Fixed must be empty; the
// template says it all.
func (m *Model) Infill(ctx context.Context, template string, req SampleRequest) (*SampleResult, error) {
	if req.Prefix != "" || req.Suffix != "" || len(req.Fixed) > 0 {
		return nil, fmt.Errorf("%w: an infill request takes its fixed text from the template; leave Prefix, Suffix and Fixed empty", ErrBadRequest)
	}
	parts, err := ParseTemplate(template)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: empty infill template; write text with [MASK] or [MASK:n] spans", ErrBadTemplate)
	}
	var spans []Fixed
	pos, masks := 0, 0
	for _, p := range parts {
		if p.Masks > 0 {
			pos += p.Masks
			masks += p.Masks
			continue
		}
		ids, err := m.encode("template text", p.Text)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			continue // text a normalizer removes entirely pins nothing
		}
		toks := make([]int, len(ids))
		for i, t := range ids {
			toks[i] = int(t)
		}
		spans = append(spans, Fixed{Pos: pos, Tokens: toks})
		pos += len(ids)
	}
	if masks == 0 {
		m.opts.warn("the infill template has no [MASK] span; nothing to generate")
	}
	n := pos
	length := req.Length
	if length == 0 {
		length = m.man.Length
		if n > length {
			return nil, fmt.Errorf("%w: the template is %d tokens but the model's length is %d; shorten it (or pass a longer length, which the model was not trained on)", ErrTooLong, n, length)
		}
	}
	if n > length {
		return nil, fmt.Errorf("%w: the template is %d tokens but the length is %d", ErrTooLong, n, length)
	}
	if eos := m.man.Tokenizer.EOSID; n < length && eos >= 0 && eos < m.man.Tokens {
		spans = append(spans, Fixed{Pos: n, Tokens: []int{eos}})
	}
	req.Fixed = spans
	req.Length = length
	r, err := m.resolve(req)
	if err != nil {
		return nil, err
	}
	r.keep = [2]int{0, n}
	return m.run(ctx, r)
}

// fixedTokens is used by tests: the tokens a resolved request pins.
func fixedTokens(cfg diffusion.Config) map[int]int64 {
	out := map[int]int64{}
	for _, s := range cfg.Fixed {
		for i, t := range s.Tokens {
			out[s.Start+i] = t
		}
	}
	return out
}
