package tokenizer

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// BenchmarkEncodeTestSplit encodes data/test.txt (present when the training
// data has been prepared) with the shipped brown-sedd-small tokenizer and
// reports tokens per second. Each iteration loads a fresh tokenizer, so no
// word is cached at the start.
func BenchmarkEncodeTestSplit(b *testing.B) {
	text, err := os.ReadFile("../../data/test.txt")
	if errors.Is(err, fs.ErrNotExist) {
		b.Skip("no data/test.txt: run export/train/reproduce.sh")
	} else if err != nil {
		b.Fatal(err)
	}
	docs := strings.Split(string(text), "\n<|endoftext|>\n")
	tokens := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		tok, err := Load(shippedTokenizer)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for _, d := range docs {
			ids, err := tok.Encode(d)
			if err != nil {
				b.Fatal(err)
			}
			tokens += len(ids)
		}
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// shippedTokenizer is the tokenizer of the shipped brown-sedd-small model,
// trained by the project's BPE trainer (then export/train/bpe.py, now
// export/train/train_tokenizer.py with the tokenizers library).
const shippedTokenizer = "../../models/brown-sedd-small/tokenizer.json"
