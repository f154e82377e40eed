package sdk_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk"
)

// TestTokenizerSizeCap opens a model whose tokenizer.json is one byte over
// the 64 MiB cap (a sparse file: no disk used): it is refused with
// ErrBadModel before it is read (a 200 MB one used to take the process to 1
// GB of memory).
func TestTokenizerSizeCap(t *testing.T) {
	dir := fixtureCopy(t, hAbsorb)
	p := filepath.Join(dir, "tokenizer.json")
	if err := os.Truncate(p, 64<<20+1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := sdk.Open(dir, sdk.WithThreads(1))
	if err == nil {
		m.Close()
		t.Fatal("Open succeeded")
	}
	if !errors.Is(err, sdk.ErrBadModel) || !strings.Contains(err.Error(), "tokenizer.json") || !strings.Contains(err.Error(), "67108864") {
		t.Errorf("error %v; want ErrBadModel naming tokenizer.json and its limit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refused after %v: was the file read?", d)
	}
}
