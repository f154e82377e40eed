package main

import "testing"

func TestTerminalGeometry(t *testing.T) {
	for _, tc := range []struct {
		name         string
		s            string
		width, lines int
		clipped      string // clip(s, 6)
	}{
		{"empty", "", 10, 1, ""},
		{"fits", "abc", 10, 1, "abc"},
		{"exactly one line", "abcdefghij", 10, 1, "abcde…"},
		{"wraps", "abcdefghijk", 10, 2, "abcde…"},
		{"wide characters take two cells", "漢字漢字漢字", 10, 2, "漢字…"},
		{"combining marks take none", "e\u0301e\u0301e\u0301", 2, 2, "e\u0301e\u0301e\u0301"},
		{"six cells fit in six", "abcdef", 6, 1, "abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := physicalLines(tc.s, tc.width); got != tc.lines {
				t.Errorf("physicalLines(%q, %d) = %d, want %d", tc.s, tc.width, got, tc.lines)
			}
			if got := clip(tc.s, 6); got != tc.clipped {
				t.Errorf("clip(%q, 6) = %q, want %q", tc.s, got, tc.clipped)
			}
			if got := displayWidth(clip(tc.s, 6)); got > 6 {
				t.Errorf("clip(%q, 6) takes %d cells", tc.s, got)
			}
		})
	}
}

func TestPrintable(t *testing.T) {
	if got, want := printable("a\nb\tc\x07d\u00e9"), "a↵b c d\u00e9"; got != want {
		t.Errorf("printable = %q, want %q", got, want)
	}
}
