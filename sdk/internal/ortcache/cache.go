// Package ortcache keeps ONNX Runtime's optimized copies of model graphs on
// disk, so that opening a model a second time skips what the first time
// cost: reading and hashing the ONNX file, parsing it, copying every weight
// and running the graph optimizations.
//
// An entry is a directory under the cache root holding graph.onnx (the graph
// as ONNX Runtime optimized it, written by ONNX Runtime itself through
// SessionOptions.SetOptimizedModelFilePath), graph.onnx.data (its weights, an
// external-data file that ONNX Runtime memory-maps instead of copying) and
// entry.json (what the entry was built from, and the size and CRC-32C of both
// files). An entry is keyed by everything that shapes the optimized graph:
// the source file's sha256, the ONNX Runtime version, the execution provider
// and the CPU's instruction-set flags (ONNX Runtime picks kernels and layouts
// for the CPU it optimizes on). An entry is built in a temporary directory
// and renamed into place, so concurrent processes never see half of one;
// before it is used both files are checked against entry.json, and an entry
// that does not match (truncated, overwritten, bit rot) or was written for
// something else is deleted and built again. Building an entry deletes the
// entries of the same source built for another runtime or CPU (stale ones).
// Files of an entry that are not regular files (a FIFO, a device, a link)
// are refused before they are opened. A session loads a private copy of an
// entry (Pin), not the entry itself, so that no other process truncating the
// cached weights can reach the session's mapping of them (SIGBUS).
package ortcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Format is the entry format; entries of another format are rebuilt.
const Format = 1

// File names inside an entry.
const (
	GraphFile = "graph.onnx"
	DataFile  = GraphFile + ".data"
	EntryFile = "entry.json"
)

// maxEntryJSON bounds entry.json, which is read before anything is trusted.
const maxEntryJSON = 64 << 10

// Key identifies what an entry was built from.
type Key struct {
	// SourceSHA256 is the lower-case hex sha256 of the ONNX file the entry
	// is an optimized copy of (checked when the entry is built).
	SourceSHA256 string
	// ORTVersion is the ONNX Runtime version that optimized it.
	ORTVersion string
	// Provider is the execution provider, "cpu".
	Provider string
}

// cpuFlags returns the CPU's instruction-set flags as the kernel reports
// them (Linux), or the architecture alone elsewhere.
var cpuFlags = sync.OnceValue(func() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			name, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if n := strings.TrimSpace(name); n == "flags" || n == "Features" {
				return runtime.GOARCH + ":" + strings.Join(strings.Fields(val), " ")
			}
		}
	}
	return runtime.GOARCH
})

// ID is the digest of everything in the key, with the CPU's flags.
func (k Key) ID() string {
	h := sha256.New()
	fmt.Fprintf(h, "format %d\nsource %s\nonnxruntime %s\nprovider %s\ncpu %s\n",
		Format, k.SourceSHA256, k.ORTVersion, k.Provider, cpuFlags())
	return hex.EncodeToString(h.Sum(nil))
}

// dirName is the entry's directory: the source's digest first, so that the
// entries of one source (stale ones included) are found by prefix.
func (k Key) dirName() string { return k.SourceSHA256[:16] + "-" + k.ID()[:16] }

// valid reports whether k can name an entry.
func (k Key) valid() error {
	if len(k.SourceSHA256) != 64 || strings.Trim(k.SourceSHA256, "0123456789abcdef") != "" {
		return fmt.Errorf("cache: source sha256 %q is not 64 lower-case hex digits", k.SourceSHA256)
	}
	if k.ORTVersion == "" || k.Provider == "" {
		return errors.New("cache: the key needs the ONNX Runtime version and the provider")
	}
	return nil
}

// Cache is a cache root directory.
type Cache struct{ Root string }

// entry is entry.json.
type entry struct {
	Format       int         `json:"format"`
	SourceSHA256 string      `json:"source_sha256"`
	ORTVersion   string      `json:"onnxruntime"`
	Provider     string      `json:"provider"`
	KeyID        string      `json:"key"`
	Files        []fileCheck `json:"files"`
	Created      string      `json:"created"`
	// Sources are the source files found to hold SourceSHA256, as they were
	// when their content was checked.
	Sources []SourceStat `json:"sources,omitempty"`
}

// SourceStat is the identity of a source file whose content was checked
// against its sha256: while it is unchanged, the file need not be read again.
type SourceStat struct {
	Path    string `json:"path"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	CtimeNs int64  `json:"ctime_ns"`
}

// racyWindow: a file whose status-change time is this close to now is not
// trusted, because file times tick coarsely (a jiffy): a change made within
// the same tick as the check could leave every time as it was. It is hashed
// again at the next open instead (git's "racily clean" rule).
var racyWindow = 2 * time.Second

// settled reports whether st changed long enough ago to be trusted.
func settled(st SourceStat) bool {
	return time.Since(time.Unix(0, st.CtimeNs)) > racyWindow && time.Since(time.Unix(0, st.MtimeNs)) > racyWindow
}

// maxSources bounds the source files an entry remembers (copies of one model
// in several directories); the oldest is forgotten first.
const maxSources = 16

type fileCheck struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	CRC32C string `json:"crc32c"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// check computes name's size and CRC-32C. Only a regular file is read: a
// FIFO, device, directory or symbolic link in its place is refused before it
// is opened, and it is opened without blocking and without following links
// (so that a FIFO put there in between cannot hang the process either) and
// checked again on the open file.
func check(dir, name string) (fileCheck, error) {
	f, err := openRegular(filepath.Join(dir, name))
	if err != nil {
		return fileCheck{}, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	if err != nil {
		return fileCheck{}, err
	}
	return fileCheck{Name: name, Size: n, CRC32C: fmt.Sprintf("%08x", h.Sum32())}, nil
}

// Lookup returns the graph file of k's entry when there is one and it is
// intact. problem is "" for a usable entry or a plain miss; otherwise it says
// what was wrong with the entry found, which has been deleted (the caller
// builds it again and may log why).
func (c Cache) Lookup(k Key) (graph string, problem string, err error) {
	if err := k.valid(); err != nil {
		return "", "", err
	}
	dir := filepath.Join(c.Root, k.dirName())
	raw, err := readSmall(filepath.Join(dir, EntryFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Lstat(dir); serr == nil {
			problem = "incomplete entry (no " + EntryFile + ")"
			return "", problem, c.remove(dir)
		}
		return "", "", nil
	}
	if err != nil {
		return "", "unreadable " + EntryFile + ": " + err.Error(), c.remove(dir)
	}
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", EntryFile + " is not valid JSON", c.remove(dir)
	}
	if e.Format != Format || e.SourceSHA256 != k.SourceSHA256 || e.ORTVersion != k.ORTVersion ||
		e.Provider != k.Provider || e.KeyID != k.ID() {
		return "", fmt.Sprintf("stale entry (built for format %d, ONNX Runtime %q, provider %q)", e.Format, e.ORTVersion, e.Provider),
			c.remove(dir)
	}
	if len(e.Files) < 1 || len(e.Files) > 2 || e.Files[0].Name != GraphFile || (len(e.Files) == 2 && e.Files[1].Name != DataFile) {
		return "", EntryFile + " does not list " + GraphFile + " (and " + DataFile + ")", c.remove(dir)
	}
	for _, want := range e.Files {
		got, err := check(dir, want.Name)
		if err != nil {
			return "", want.Name + ": " + err.Error(), c.remove(dir)
		}
		if got != want {
			return "", fmt.Sprintf("%s is corrupt: %d bytes with CRC-32C %s, %s records %d bytes with %s",
				want.Name, got.Size, got.CRC32C, EntryFile, want.Size, want.CRC32C), c.remove(dir)
		}
	}
	return filepath.Join(dir, GraphFile), "", nil
}

// Trusted reports whether the source file at path is one whose content was
// found to hold k's source digest and that has not changed since (same
// device, inode, size, modification and status-change times). Only then may a
// caller skip reading it; a file never checked, or touched since, must be
// hashed again and, when it matches, passed to Trust.
func (c Cache) Trusted(k Key, path string) bool {
	st, e, ok := c.sourceAndEntry(k, path)
	if !ok {
		return false
	}
	for _, s := range e.Sources {
		if s == st {
			return true
		}
	}
	return false
}

// Trust records that the source file at path, as it is now, was checked to
// hold k's source digest. It fails quietly (returns false) where file
// identities cannot be read or the entry cannot be rewritten.
func (c Cache) Trust(k Key, path string) bool {
	st, e, ok := c.sourceAndEntry(k, path)
	if !ok || !settled(st) {
		return false
	}
	kept := []SourceStat{st}
	for _, s := range e.Sources {
		if s.Path != st.Path && len(kept) < maxSources {
			kept = append(kept, s)
		}
	}
	e.Sources = kept
	return c.writeEntry(filepath.Join(c.Root, k.dirName()), e) == nil
}

// sourceAndEntry reads the identity of the source file at path and k's
// entry.json; false when either cannot be read.
func (c Cache) sourceAndEntry(k Key, path string) (SourceStat, entry, bool) {
	st, ok := statSource(path)
	if !ok || k.valid() != nil {
		return SourceStat{}, entry{}, false
	}
	e, err := c.readEntry(k)
	return st, e, err == nil
}

func (c Cache) readEntry(k Key) (entry, error) {
	raw, err := readSmall(filepath.Join(c.Root, k.dirName(), EntryFile))
	if err != nil {
		return entry{}, err
	}
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return entry{}, err
	}
	if e.KeyID != k.ID() {
		return entry{}, errors.New("entry of another key")
	}
	return e, nil
}

// writeEntry replaces dir's entry.json atomically.
func (c Cache) writeEntry(dir string, e entry) error {
	raw, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".entry-*.json")
	if err != nil {
		return err
	}
	_, err = f.Write(append(raw, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, EntryFile))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Remove deletes k's entry, if any.
func (c Cache) Remove(k Key) error {
	if err := k.valid(); err != nil {
		return err
	}
	return c.remove(filepath.Join(c.Root, k.dirName()))
}

// readSmall reads a regular file of at most maxEntryJSON bytes.
func readSmall(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxEntryJSON+1))
	if err == nil && len(raw) > maxEntryJSON {
		err = fmt.Errorf("not a regular file of at most %d bytes", maxEntryJSON)
	}
	return raw, err
}

// errNotRegular is the error of a cache file that is not a regular file.
var errNotRegular = errors.New("not a regular file")

// openRegular opens path for reading when it is a regular file: it is
// looked at (without following a symbolic link) before it is opened, opened
// without blocking (a FIFO opened for reading would wait for a writer
// forever) and without following a link, and the open file is checked again.
func openRegular(path string) (*os.File, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w (%s)", errNotRegular, st.Mode().Type())
	}
	f, err := openNoBlock(path)
	if err != nil {
		return nil, err
	}
	if st, err = f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%w (%s)", errNotRegular, st.Mode().Type())
		}
		return nil, err
	}
	return f, nil
}

// remove deletes dir, an entry or a build directory under the root.
func (c Cache) remove(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cache: removing %s: %w", dir, err)
	}
	return nil
}

// Build is an entry being built.
type Build struct {
	c      Cache
	k      Key
	tmp    string
	source string
}

// Checked records that the source file at path was read and found to hold
// the key's digest for this build: Commit remembers it as trusted.
func (b *Build) Checked(path string) { b.source = path }

// Begin starts building k's entry in a new temporary directory under the
// root (created with mode 0700 when missing).
func (c Cache) Begin(k Key) (*Build, error) {
	if err := k.valid(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Root, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.MkdirTemp(c.Root, ".build-"+k.SourceSHA256[:16]+"-")
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Build{c: c, k: k, tmp: tmp}, nil
}

// GraphPath is where ONNX Runtime must write the optimized graph; its
// weights go to DataFile beside it.
func (b *Build) GraphPath() string { return filepath.Join(b.tmp, GraphFile) }

// Abort deletes the build directory.
func (b *Build) Abort() { _ = b.c.remove(b.tmp) }

// Commit checks that ONNX Runtime wrote the files, records their sizes and
// CRC-32C in entry.json and moves the entry into place, then deletes stale
// entries of the same source. When another process committed the same entry
// first, its entry is kept and this build deleted. It returns the graph file
// of the entry in place.
func (b *Build) Commit() (string, error) {
	var files []fileCheck
	for _, name := range []string{GraphFile, DataFile} {
		fc, err := check(b.tmp, name)
		if name == DataFile && errors.Is(err, fs.ErrNotExist) {
			break // a graph without weights large enough to move out
		}
		if err != nil {
			b.Abort()
			return "", fmt.Errorf("cache: ONNX Runtime did not write %s: %w", name, err)
		}
		files = append(files, fc)
	}
	e := entry{Format: Format, SourceSHA256: b.k.SourceSHA256, ORTVersion: b.k.ORTVersion,
		Provider: b.k.Provider, KeyID: b.k.ID(), Files: files, Created: time.Now().UTC().Format(time.RFC3339)}
	if b.source != "" {
		if st, ok := statSource(b.source); ok && settled(st) {
			e.Sources = []SourceStat{st}
		}
	}
	if err := b.c.writeEntry(b.tmp, e); err != nil {
		b.Abort()
		return "", fmt.Errorf("cache: %w", err)
	}
	final := filepath.Join(b.c.Root, b.k.dirName())
	if err := os.Rename(b.tmp, final); err != nil {
		// Another process may have put the same entry in place meanwhile.
		b.Abort()
		if _, serr := os.Stat(filepath.Join(final, EntryFile)); serr == nil {
			return filepath.Join(final, GraphFile), nil
		}
		return "", fmt.Errorf("cache: %w", err)
	}
	b.c.removeStale(b.k)
	return filepath.Join(final, GraphFile), nil
}

// removeStale deletes the other entries of k's source, and its build
// directories and any private copies (Pin) older than a day (left by a
// process that died).
func (c Cache) removeStale(k Key) {
	keep := k.dirName()
	prefix := k.SourceSHA256[:16] + "-"
	ents, err := os.ReadDir(c.Root)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == keep:
		case strings.HasPrefix(name, prefix):
			_ = c.remove(filepath.Join(c.Root, name))
		case strings.HasPrefix(name, ".build-"+prefix), strings.HasPrefix(name, pinPrefix):
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
				_ = c.remove(filepath.Join(c.Root, name))
			}
		}
	}
}

// DefaultRoot is where the SDK keeps its cache when no option says:
// $SEDD_CACHE_DIR when set, else the user's cache directory
// (${XDG_CACHE_HOME:-~/.cache} on Linux) + /sedd/onnxruntime, or "" (no
// cache) when there is none.
func DefaultRoot() string {
	if d := os.Getenv("SEDD_CACHE_DIR"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil || d == "" {
		return ""
	}
	return filepath.Join(d, "sedd", "onnxruntime")
}
