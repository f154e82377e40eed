package cmdline

import (
	"strings"
	"testing"
)

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

// TestParseSizeErrorListsEveryUnit: the error for an unknown unit lists every
// unit ParseSize accepts (it used to stop at GB while 100TB was accepted).
func TestParseSizeErrorListsEveryUnit(t *testing.T) {
	_, err := ParseSize("5x")
	if err == nil {
		t.Fatal("5x accepted")
	}
	for _, unit := range []string{"B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "K", "M", "G", "T"} {
		if _, perr := ParseSize("2" + unit); perr != nil {
			t.Errorf("2%s refused: %v", unit, perr)
		}
		if !strings.Contains(err.Error(), " "+unit+",") && !strings.Contains(err.Error(), " "+unit+" ") {
			t.Errorf("the error %q does not list %s", err, unit)
		}
	}
}
