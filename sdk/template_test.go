package sdk

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name     string
		template string
		want     []templatePart
	}{
		{"plain text", "hello", []templatePart{{Text: "hello"}}},
		{"empty", "", nil},
		{"one mask", "[MASK]", []templatePart{{Masks: 1}}},
		{"counted mask in text", "The [MASK:12] and that's why I was late.", []templatePart{
			{Text: "The "}, {Masks: 12}, {Text: " and that's why I was late."}}},
		{"adjacent masks stay separate", "[MASK][MASK:2]", []templatePart{{Masks: 1}, {Masks: 2}}},
		{"bracket that is not a mask is text", "a [b] [MASKED] c", []templatePart{{Text: "a [b] [MASKED] c"}}},
		{"lowercase is text", "[mask]", []templatePart{{Text: "[mask]"}}},
		{"non-ASCII around masks", "é[MASK]😀", []templatePart{{Text: "é"}, {Masks: 1}, {Text: "😀"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTemplate(tt.template)
			if err != nil {
				t.Fatalf("parseTemplate(%q): %v", tt.template, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("parseTemplate(%q) = %+v, want %+v", tt.template, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("parseTemplate(%q)[%d] = %+v, want %+v", tt.template, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseTemplateErrors(t *testing.T) {
	tests := []struct {
		name, template string
		offset         int
	}{
		{"unclosed", "abc [MASK:", 4},
		{"unclosed with digits", "[MASK:12", 0},
		{"zero", "x[MASK:0]", 1},
		{"negative", "[MASK:-3]", 0},
		{"plus sign", "[MASK:+3]", 0},
		{"not a number", "[MASK:ten]", 0},
		{"empty count", "[MASK:]", 0},
		{"too many", "[MASK:99999999999]", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTemplate(tt.template)
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("parseTemplate(%q) error = %v, want ErrBadRequest", tt.template, err)
			}
			var te *templateError
			if !errors.As(err, &te) || te.Offset != tt.offset {
				t.Fatalf("parseTemplate(%q) error = %#v, want offset %d", tt.template, err, tt.offset)
			}
		})
	}
}

// FuzzParseTemplate checks that parsing never panics and that a parsed
// template re-renders to an equivalent template.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"", "[MASK]", "The [MASK:12] end.", "[MASK:", "[[MASK]]", "[MASK:1][MASK:2]x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := parseTemplate(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range parts {
			if p.Masks < 0 || (p.Masks == 0) == (p.Text == "") {
				t.Fatalf("bad part %+v from %q", p, s)
			}
			if p.Masks > 0 {
				b.WriteString("[MASK:")
				b.WriteString(itoa(p.Masks))
				b.WriteString("]")
			} else {
				b.WriteString(p.Text)
			}
		}
		again, err := parseTemplate(b.String())
		if err != nil {
			t.Fatalf("re-rendered %q of %q does not parse: %v", b.String(), s, err)
		}
		if total(again) != total(parts) {
			t.Fatalf("mask count changed: %q → %q", s, b.String())
		}
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func total(parts []templatePart) int {
	n := 0
	for _, p := range parts {
		n += p.Masks
	}
	return n
}
