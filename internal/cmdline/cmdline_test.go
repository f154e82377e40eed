package cmdline

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4GiB", 4 << 30, true}, {"500MB", 500e6, true}, {"1.5G", 3 << 29, true}, {"1048576", 1 << 20, true},
		{" 2 gib ", 2 << 30, true}, {"64k", 64 << 10, true}, {"7B", 7, true},
		{"", 0, false}, {"lots", 0, false}, {"5x", 0, false}, {"-1GiB", 0, false}, {"0", 0, false}, {"0.5", 0, false},
		{"99999999EiB", 0, false}, {"1e3", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
