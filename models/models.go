// Package models ships the default SEDD model inside programs that import it,
// so that the sedd command samples with no flags from any directory.
//
// The model directory is embedded in the binary and written out on first use
// to the user's cache directory, where sdk.Open can read it:
//
//	dir, err := models.Default()
//	if errors.Is(err, models.ErrNoDefault) { /* built without a model */ }
//	m, err := sdk.Open(dir)
//
// The shipped model's autoregressive twin, which measures the generative
// perplexity of its samples, ships the same way (DefaultEvaluator).
//
// Extraction is atomic (a temporary directory renamed into place) and
// verified; a later call finds the extracted copy and only checks file sizes.
package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/sedd-go/sedd/sdk/manifest"
)

// ErrNoDefault is returned by Default when the program was built without a
// shipped model.
var ErrNoDefault = errors.New("no default model is built into this program")

// shipped holds the embedded model directory under the path shippedName;
// both are empty when no model ships (see default.go, if present).
var (
	shipped     fs.FS
	shippedName string
)

// Name returns the name of the shipped model directory (for example
// "brown-sedd"), or "" when none ships.
func Name() string { return shippedName }

// shippedEval holds the embedded evaluator directory (the shipped model's
// autoregressive twin) under shippedEvalName; both are empty when none ships
// (see evaluator.go, if present).
var (
	shippedEval     fs.FS
	shippedEvalName string
)

// EvaluatorName returns the name of the shipped evaluator directory (for
// example "brown-sedd-small-ar"), or "" when none ships.
func EvaluatorName() string { return shippedEvalName }

// DefaultEvaluator returns the directory of the shipped evaluator: an
// autoregressive model on the shipped model's tokenizer, used to measure the
// generative perplexity of its samples (sdk.OpenEvaluator). It is extracted
// like Default's model and fails with ErrNoDefault when none ships.
func DefaultEvaluator() (string, error) {
	if shippedEval == nil || shippedEvalName == "" {
		return "", ErrNoDefault
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("shipped evaluator: no cache directory to extract it to (%v); set XDG_CACHE_HOME or HOME", err)
	}
	return Extract(shippedEval, shippedEvalName, filepath.Join(cache, "sedd", "models"))
}

// Default returns the directory of the shipped model, extracting it under
// os.UserCacheDir()/sedd/models/ the first time. It fails with ErrNoDefault
// when no model ships with this program.
func Default() (string, error) {
	if shipped == nil || shippedName == "" {
		return "", ErrNoDefault
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("shipped model: no cache directory to extract it to (%v); set XDG_CACHE_HOME or HOME", err)
	}
	return Extract(shipped, shippedName, filepath.Join(cache, "sedd", "models"))
}

// Extract writes the model directory name of fsys to
// root/<name>-<key>/ and returns that path. key is a prefix of a sha256 over
// the directory's files (model.onnx enters through the sha256 that sedd.json
// records for it), so a program that ships a different model never reuses a
// stale copy. An existing copy whose file sizes match is returned as is; a
// missing or damaged one is written again. Writing goes to a temporary
// directory under root that is checked against fsys (model.onnx against
// sedd.json's sha256) and then renamed into place, so concurrent callers and
// interrupted runs never see a partial model. Extract is safe for concurrent
// use, also by several processes.
func Extract(fsys fs.FS, name, root string) (string, error) {
	files, onnx, err := list(fsys, name)
	if err != nil {
		return "", err
	}
	key, err := contentKey(fsys, name, files, onnx.File)
	if err != nil {
		return "", err
	}
	final := filepath.Join(root, name+"-"+key[:16])
	if present(final, files) {
		return final, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("shipped model: %w", err)
	}
	tmp, err := os.MkdirTemp(root, ".extract-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("shipped model: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for _, f := range files {
		if err := copyOut(fsys, path.Join(name, f.rel), filepath.Join(tmp, filepath.FromSlash(f.rel)), f.size); err != nil {
			return "", fmt.Errorf("shipped model: extracting %s: %w", f.rel, err)
		}
	}
	if err := check(fsys, name, tmp, files, onnx); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("shipped model: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process may have won the race; its copy is as good.
		if present(final, files) {
			return final, nil
		}
		// A damaged copy is in the way: replace it.
		if rmErr := os.RemoveAll(final); rmErr != nil {
			return "", fmt.Errorf("shipped model: replacing damaged %s: %w", final, rmErr)
		}
		if err := os.Rename(tmp, final); err != nil {
			return "", fmt.Errorf("shipped model: %w", err)
		}
	}
	return final, nil
}

// file is one regular file of the embedded model directory.
type file struct {
	rel  string // slash-separated, relative to the model directory
	size int64
}

// list returns the regular files under name, sorted, and what sedd.json
// records about the ONNX file.
func list(fsys fs.FS, name string) ([]file, manifest.ONNX, error) {
	raw, err := fs.ReadFile(fsys, path.Join(name, manifest.FileName))
	if err != nil {
		return nil, manifest.ONNX{}, fmt.Errorf("shipped model %s: %w", name, err)
	}
	onnx, err := onnxOf(raw)
	if err != nil {
		return nil, manifest.ONNX{}, fmt.Errorf("shipped model %s: %w", name, err)
	}
	var files []file
	err = fs.WalkDir(fsys, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			files = append(files, file{rel: p[len(name)+1:], size: info.Size()})
		}
		return nil
	})
	if err != nil {
		return nil, manifest.ONNX{}, fmt.Errorf("shipped model %s: %w", name, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files, onnx, nil
}

// onnxOf returns what a manifest of either kind (a SEDD model or a causal-lm
// evaluator) records about its ONNX file, validating the manifest.
func onnxOf(raw []byte) (manifest.ONNX, error) {
	_, kind, err := manifest.PeekKind(raw)
	if err != nil {
		return manifest.ONNX{}, err
	}
	if kind == manifest.KindCausalLM {
		e, err := manifest.ParseEvaluator(raw)
		if err != nil {
			return manifest.ONNX{}, err
		}
		return e.ONNX, nil
	}
	m, err := manifest.Parse(raw)
	if err != nil {
		return manifest.ONNX{}, err
	}
	return m.ONNX, nil
}

// contentKey hashes the names and sizes of all files and the contents of all
// but the ONNX file, whose sha256 sedd.json already carries.
func contentKey(fsys fs.FS, name string, files []file, onnxFile string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.rel, f.size)
		if f.rel == onnxFile {
			continue
		}
		raw, err := fs.ReadFile(fsys, path.Join(name, f.rel))
		if err != nil {
			return "", fmt.Errorf("shipped model %s: %w", name, err)
		}
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// present reports whether dir holds every file with its expected size.
func present(dir string, files []file) bool {
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.rel)))
		if err != nil || !st.Mode().IsRegular() || st.Size() != f.size {
			return false
		}
	}
	return len(files) > 0
}

func copyOut(fsys fs.FS, src, dst string, size int64) error {
	in, err := fsys.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	return err
}

// check compares the extracted copy in dir with fsys: the ONNX file against
// the sha256 sedd.json records (byte for byte when it records none), every
// other file byte for byte.
func check(fsys fs.FS, name, dir string, files []file, onnx manifest.ONNX) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.rel))
		if f.rel == onnx.File && onnx.SHA256 != "" {
			onnxSHA := onnx.SHA256
			got, err := fileSHA256(p)
			if err != nil {
				return fmt.Errorf("shipped model: checking %s: %w", f.rel, err)
			}
			if got != onnxSHA {
				return fmt.Errorf("shipped model: extracted %s has sha256 %s, sedd.json records %s (disk full or failing?)", f.rel, got, onnxSHA)
			}
			continue
		}
		want, err := fs.ReadFile(fsys, path.Join(name, f.rel))
		if err != nil {
			return fmt.Errorf("shipped model: %w", err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("shipped model: checking %s: %w", f.rel, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("shipped model: extracted %s differs from the embedded copy (disk full or failing?)", f.rel)
		}
	}
	return nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
