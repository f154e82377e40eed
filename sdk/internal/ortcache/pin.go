package ortcache

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// Pin makes a private copy of the entry whose graph file is graph, for one
// session to load. ONNX Runtime memory-maps an entry's weights file and reads
// the weights through the mapping for as long as the session lives, so that
// another process or a disk cleaner truncating the file in the cache would
// kill this process with SIGBUS at its next forward pass. The copy lies in a
// new directory of mode 0700 (under the cache root, on the same file system,
// else under the system's temporary directory) and is checked against
// entry.json while it is written, so what the session loads is what was
// checked. Once the session is created, done deletes the directory: the
// session's mapping keeps the unlinked file alive, and no other process can
// reach it by a path to shrink it.
//
// The cost is one copy of the entry per open: its time, and the disk space
// while it lasts (docs/ERRORS.md has the figures).
func (c Cache) Pin(k Key, graph string) (pinned string, done func(), err error) {
	e, err := c.readEntry(k)
	if err != nil {
		return "", nil, fmt.Errorf("cache: %w", err)
	}
	var errs []error
	for _, parent := range []string{c.Root, os.TempDir()} {
		p, d, err := pinIn(parent, filepath.Dir(graph), e.Files)
		if err == nil {
			return p, d, nil
		}
		errs = append(errs, err)
	}
	return "", nil, fmt.Errorf("cache: a private copy of the entry: %w", errors.Join(errs...))
}

// pinPrefix starts the names of private copies under the cache root.
const pinPrefix = ".pin-"

func pinIn(parent, src string, files []fileCheck) (string, func(), error) {
	tmp, err := os.MkdirTemp(parent, pinPrefix)
	if err != nil {
		return "", nil, err
	}
	done := func() { os.RemoveAll(tmp) }
	for _, want := range files {
		got, err := copyChecked(filepath.Join(tmp, want.Name), filepath.Join(src, want.Name))
		if err == nil && got != want {
			err = fmt.Errorf("%s changed since it was checked: %d bytes with CRC-32C %s, %s records %d bytes with %s",
				want.Name, got.Size, got.CRC32C, EntryFile, want.Size, want.CRC32C)
		}
		if err != nil {
			done()
			return "", nil, err
		}
	}
	return filepath.Join(tmp, GraphFile), done, nil
}

// copyChecked copies the regular file at path to a new file dst and returns
// its size and CRC-32C.
func copyChecked(dst, path string) (fileCheck, error) {
	f, err := openRegular(path)
	if err != nil {
		return fileCheck{}, err
	}
	defer f.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fileCheck{}, err
	}
	h := crc32.New(castagnoli)
	n, err := io.Copy(io.MultiWriter(out, h), f)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fileCheck{}, err
	}
	return fileCheck{Name: filepath.Base(path), Size: n, CRC32C: fmt.Sprintf("%08x", h.Sum32())}, nil
}
