// Package modeldir reads the files of an exported model directory, on disk or
// in any fs.FS (such as a model embedded in a program), refusing what is not
// a regular file and checking sizes before reading, so that a FIFO, a device
// or a huge file in place of sedd.json can neither hang nor exhaust memory.
package modeldir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Limits on the files of a model directory, checked before a file is read.
const (
	MaxManifest  = 1 << 20  // sedd.json
	MaxTokenizer = 64 << 20 // tokenizer.json (GPT-2's is 1.4 MB; the largest published ones about 35 MB)
	MaxGolden    = 64 << 20 // golden.json
	MaxGoldenBin = 4 << 30  // golden.bin (sedd-small's is about 0.5 GB)
)

// Errors, matched with errors.Is.
var (
	// ErrNotRegular marks a file that is a directory, a FIFO, a device or
	// another special file.
	ErrNotRegular = kind.New(kind.ErrBadModel, "not a regular file")
	// ErrTooLarge marks a file larger than its limit.
	ErrTooLarge = kind.New(kind.ErrBadModel, "file too large")
	// ErrChecksum marks a file whose sha256 differs from the recorded one.
	ErrChecksum = kind.New(kind.ErrBadModel, "checksum mismatch")
	// ErrSize marks a file whose size differs from the recorded one.
	ErrSize = kind.New(kind.ErrBadModel, "size mismatch")
)

// Dir is a model directory: a directory on disk, or an fs.FS.
type Dir struct {
	path string // the directory on disk, or ""
	fsys fs.FS
	name string // how messages name the directory
}

// OnDisk returns the model directory at path.
func OnDisk(path string) Dir { return Dir{path: path, fsys: os.DirFS(path), name: path} }

// FromFS returns the model directory at the root of fsys; name says in
// messages what it is (for example "built-in model brown-sedd-small").
func FromFS(fsys fs.FS, name string) Dir { return Dir{fsys: fsys, name: name} }

// Path returns the directory on disk, or "" for an fs.FS.
func (d Dir) Path() string { return d.path }

// String names the directory for messages.
func (d Dir) String() string { return d.name }

// where names file name of d in messages.
func (d Dir) where(name string) string {
	if d.path != "" {
		return filepath.Join(d.path, name)
	}
	return d.name + ": " + name
}

// Stat returns the size of file name, which must be a regular file
// (following symbolic links).
func (d Dir) Stat(name string) (int64, error) {
	if !fs.ValidPath(name) {
		return 0, fmt.Errorf("%s: invalid file name", d.where(name))
	}
	st, err := fs.Stat(d.fsys, name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", d.where(name), unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: %w (%v); a model directory holds the files export/export.py writes",
			d.where(name), ErrNotRegular, st.Mode().Type())
	}
	return st.Size(), nil
}

// ReadFile reads file name, a regular file of at most limit bytes. Both are
// checked before anything is read, and the read stops at the limit should the
// file grow meanwhile.
func (d Dir) ReadFile(name string, limit int64) ([]byte, error) {
	size, err := d.Stat(name)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the %d this file may have", d.where(name), ErrTooLarge, size, limit)
	}
	f, err := d.fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.where(name), unwrapPath(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.where(name), err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: grew past %d bytes while being read", d.where(name), ErrTooLarge, limit)
	}
	return data, nil
}

// ReadVerified is ReadFile followed, when sha is not empty, by a check of the
// file's sha256 (lower-case hex) against sha.
func (d Dir) ReadVerified(name string, limit int64, sha string) ([]byte, error) {
	data, err := d.ReadFile(name, limit)
	if err != nil || sha == "" {
		return data, err
	}
	if err := checkSum(d.where(name), sha256.Sum256(data), sha); err != nil {
		return nil, err
	}
	return data, nil
}

// Checked reads file name, which must have the given size and, when sha is
// not empty, that sha256 (lower-case hex). What is checked is what is
// returned: the bytes are read once.
func (d Dir) Checked(name string, size int64, sha string) ([]byte, error) {
	got, err := d.Stat(name)
	if err != nil {
		return nil, err
	}
	if size > 0 && got != size {
		return nil, fmt.Errorf("%s: %w: %d bytes, but sedd.json records %d (truncated or replaced file? export it again)",
			d.where(name), ErrSize, got, size)
	}
	data, err := d.ReadFile(name, got)
	if err != nil {
		return nil, err
	}
	if sha != "" {
		if err := checkSum(d.where(name), sha256.Sum256(data), sha); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// HashFile checks file name on disk (d must be on disk) against the given
// size and sha256 without holding it in memory, and returns its path, for
// files that ONNX Runtime reads itself.
func (d Dir) HashFile(name string, size int64, sha string) (string, error) {
	if d.path == "" {
		return "", fmt.Errorf("%s: a model whose weights ONNX Runtime reads itself must be a directory on disk", d.where(name))
	}
	got, err := d.Stat(name)
	if err != nil {
		return "", err
	}
	if size > 0 && got != size {
		return "", fmt.Errorf("%s: %w: %d bytes, but sedd.json records %d (truncated or replaced file? export it again)",
			d.where(name), ErrSize, got, size)
	}
	path := filepath.Join(d.path, name)
	if sha == "" {
		return path, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if n, err := io.Copy(h, io.LimitReader(f, got+1)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	} else if n != got {
		return "", fmt.Errorf("%s: %w: changed size while being read", path, ErrSize)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return path, checkSum(path, sum, sha)
}

func checkSum(where string, sum [sha256.Size]byte, want string) error {
	if got := hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("%s: %w: sha256 %s, sedd.json records %s (corrupt or replaced file: export it again)", where, ErrChecksum, got, want)
	}
	return nil
}

// unwrapPath drops the *fs.PathError around err, whose message repeats the
// path relative to the fs.FS; the cause (fs.ErrNotExist, ...) stays.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// JSONDigest returns the sha256 (hex) of a JSON document's value rather than
// its bytes: two files that differ only in whitespace or key order have the
// same digest.
func JSONDigest(data []byte) (string, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return "", err
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}
