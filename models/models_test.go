package models

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/sedd-go/sedd/sdk/manifest"
)

// fakeModel returns an fs.FS holding a model directory "m" whose sedd.json
// records onnx's sha256 (or a wrong one when lie is set).
func fakeModel(onnx string, lie bool) fstest.MapFS {
	sum := sha256.Sum256([]byte(onnx))
	sha := hex.EncodeToString(sum[:])
	if lie {
		sha = strings.Repeat("0", 64)
	}
	man := fmt.Sprintf(`{"format": 1, "kind": "sedd", "name": "m", "graph": "absorb", "tokens": 256,
  "noise": {"type": "loglinear", "eps": 0.001}, "length": 32,
  "model": {"hidden_size": 32, "n_blocks": 2, "n_heads": 2, "cond_dim": 16, "scale_by_sigma": true, "params": 1},
  "tokenizer": {"file": "tokenizer.json", "kind": "bytes", "vocab_size": 256, "special_tokens": {}, "eos_id": null},
  "onnx": {"file": "model.onnx", "opset": 17, "sha256": %q, "size": %d, "external_data": [],
           "inputs": ["indices", "sigma"], "outputs": ["log_score", "log_score_lse"]}}`, sha, len(onnx))
	return fstest.MapFS{
		"m/sedd.json":      {Data: []byte(man)},
		"m/model.onnx":     {Data: []byte(onnx)},
		"m/tokenizer.json": {Data: []byte(`{"model": {}}`)},
	}
}

func TestDefaultWithoutModel(t *testing.T) {
	if shipped != nil {
		t.Skip("a model ships with this build")
	}
	if _, err := Default(); !errors.Is(err, ErrNoDefault) {
		t.Fatalf("Default() error = %v, want ErrNoDefault", err)
	}
}

func TestExtract(t *testing.T) {
	root := t.TempDir()
	fsys := fakeModel("weights v1", false)
	dir, err := Extract(fsys, "m", root)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir), "m-") {
		t.Errorf("dir %s is not named after the model", dir)
	}
	for name, f := range fsys {
		got, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(name, "m/")))
		if err != nil || string(got) != string(f.Data) {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, f.Data)
		}
	}

	t.Run("reuses the copy", func(t *testing.T) {
		again, err := Extract(fsys, "m", root)
		if err != nil || again != dir {
			t.Fatalf("second Extract = %s, %v; want %s", again, err, dir)
		}
	})
	t.Run("repairs a damaged copy", func(t *testing.T) {
		if err := os.Truncate(filepath.Join(dir, "model.onnx"), 3); err != nil {
			t.Fatal(err)
		}
		again, err := Extract(fsys, "m", root)
		if err != nil || again != dir {
			t.Fatalf("Extract after damage = %s, %v; want %s", again, err, dir)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "model.onnx")); string(got) != "weights v1" {
			t.Errorf("model.onnx = %q after repair", got)
		}
	})
	t.Run("another model gets another directory", func(t *testing.T) {
		other, err := Extract(fakeModel("weights v2", false), "m", root)
		if err != nil {
			t.Fatal(err)
		}
		if other == dir {
			t.Errorf("a different model reused %s", dir)
		}
	})
	t.Run("leaves no temporary directories", func(t *testing.T) {
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left %s behind", e.Name())
			}
		}
	})
}

func TestExtractRefusesBadChecksum(t *testing.T) {
	root := t.TempDir()
	_, err := Extract(fakeModel("weights", true), "m", root)
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("Extract with a wrong sha256 = %v, want a checksum error", err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("a refused extraction left %d entries in the cache", len(entries))
	}
}

func TestExtractConcurrent(t *testing.T) {
	root := t.TempDir()
	fsys := fakeModel("weights", false)
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = Extract(fsys, "m", root)
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("caller %d: %s, %v; want %s", i, dirs[i], errs[i], dirs[0])
		}
	}
}

func TestShippedModelExtracts(t *testing.T) {
	if shipped == nil {
		t.Skip("no model ships with this build")
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	man, err := manifest.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if man.Name == "" || !strings.HasPrefix(filepath.Base(dir), Name()+"-") {
		t.Errorf("extracted %s holds model %q", dir, man.Name)
	}
}

func TestShippedEvaluatorExtracts(t *testing.T) {
	if shippedEval == nil {
		t.Skip("no evaluator ships with this build")
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir, err := DefaultEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := manifest.LoadEvaluator(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Name != EvaluatorName() || !strings.HasPrefix(filepath.Base(dir), EvaluatorName()+"-") {
		t.Errorf("extracted %s holds evaluator %q", dir, ev.Name)
	}
	if shipped != nil {
		model, err := Default()
		if err != nil {
			t.Fatal(err)
		}
		if model == dir {
			t.Errorf("model and evaluator extracted to the same directory %s", dir)
		}
	}
}
