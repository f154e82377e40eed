package sdk

import (
	"fmt"
	"strconv"
	"strings"
)

// templatePart is one piece of an infill template: either literal text, or a
// number of tokens to be generated (a mask span).
type templatePart struct {
	// Text is the literal text of this part; empty for a mask span.
	Text string
	// Masks is the number of tokens to generate for a mask span; 0 for literal text.
	Masks int
}

// maxTemplateMasks bounds n in a single [MASK:n] so that a typo cannot ask for
// an absurd amount of memory before the length check runs.
const maxTemplateMasks = 1 << 20

// parseTemplate splits an infill template into literal text and mask spans.
// "[MASK]" stands for one token to generate and "[MASK:n]" for n tokens
// (1 ≤ n ≤ maxTemplateMasks), anywhere in the text. A literal "[" that does not
// start "[MASK" is kept as text. Malformed mask markers (for example "[MASK:",
// "[MASK:0]", "[MASK:x]") are reported as a *templateError with the byte offset.
func parseTemplate(template string) ([]templatePart, error) {
	var parts []templatePart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, templatePart{Text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(template); {
		rest := template[i:]
		if !strings.HasPrefix(rest, "[MASK") {
			lit.WriteByte(template[i])
			i++
			continue
		}
		after := rest[len("[MASK"):]
		switch {
		case strings.HasPrefix(after, "]"):
			flush()
			parts = append(parts, templatePart{Masks: 1})
			i += len("[MASK]")
		case strings.HasPrefix(after, ":"):
			end := strings.IndexByte(after, ']')
			if end < 0 {
				return nil, &templateError{Offset: i, Reason: `"[MASK:" without a closing "]"; write [MASK:n] with a token count n`}
			}
			num := after[1:end]
			n, err := strconv.Atoi(num)
			if err != nil || num == "" || num[0] == '+' || num[0] == '-' {
				return nil, &templateError{Offset: i, Reason: fmt.Sprintf("%q is not a token count; write [MASK:n] with n a positive integer", "[MASK"+after[:end+1])}
			}
			if n < 1 || n > maxTemplateMasks {
				return nil, &templateError{Offset: i, Reason: fmt.Sprintf("[MASK:%d] asks for %d tokens; n must be between 1 and %d", n, n, maxTemplateMasks)}
			}
			flush()
			parts = append(parts, templatePart{Masks: n})
			i += len("[MASK") + end + 1
		default:
			// "[MASKED" or similar: ordinary text.
			lit.WriteByte(template[i])
			i++
		}
	}
	flush()
	return parts, nil
}

// templateError reports a malformed infill template.
type templateError struct {
	// Offset is the byte offset in the template where the problem starts.
	Offset int
	// Reason says what is wrong and how to write it instead.
	Reason string
}

func (e *templateError) Error() string {
	return fmt.Sprintf("infill template, byte %d: %s", e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrBadRequest) true for every *templateError.
func (e *templateError) Is(target error) bool { return target == ErrBadRequest }
