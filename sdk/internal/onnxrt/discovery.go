package onnxrt

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvLibraryPath is the environment variable naming the ONNX Runtime shared
// library.
const EnvLibraryPath = "ONNXRUNTIME_SHARED_LIBRARY_PATH"

// Where a library was found.
const (
	SourceOption     = "option"     // an explicit path passed by the caller
	SourceEnv        = "env"        // ONNXRUNTIME_SHARED_LIBRARY_PATH
	SourceExecutable = "executable" // next to the running executable, or in ../third_party/onnxruntime/ from it
	SourceUser       = "user"       // ${XDG_DATA_HOME:-$HOME/.local/share}/sedd/onnxruntime/
	SourceSystem     = "system"     // /usr/local/lib, /usr/lib, /usr/lib/x86_64-linux-gnu
)

// Library is a located ONNX Runtime shared library.
type Library struct {
	Path string
	// Source is one of the Source constants.
	Source string
	// Reason says in words why this file was chosen.
	Reason string
}

// projectLib is the project's own install location, relative to a project root.
var projectLib = filepath.Join("third_party", "onnxruntime", "libonnxruntime.so")

// systemDirs and systemNames are searched last, in order.
var (
	systemDirs  = []string{"/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu"}
	systemNames = []string{"libonnxruntime.so", "libonnxruntime.so.1"}
)

// FindLibrary locates the ONNX Runtime shared library, in this order:
//
//  1. explicit, when not empty;
//  2. the environment variable ONNXRUNTIME_SHARED_LIBRARY_PATH, when set;
//  3. next to the executable: libonnxruntime.so in its directory, or
//     third_party/onnxruntime/libonnxruntime.so in its directory or the one
//     above (a binary built into bin/ of a checkout with the project's own
//     install, scripts/install-onnxruntime.sh);
//  4. ${XDG_DATA_HOME:-$HOME/.local/share}/sedd/onnxruntime/libonnxruntime.so;
//  5. /usr/local/lib, /usr/lib, /usr/lib/x86_64-linux-gnu, as libonnxruntime.so
//     or libonnxruntime.so.1.
//
// The working directory plays no part: a library must not load code from
// wherever its caller happens to run.
//
// An explicit path or environment variable that names a missing file is an
// error rather than a reason to keep searching, so that a typo is not hidden
// by another library. When nothing is found the error wraps
// ErrLibraryNotFound and says how to install the library. FindLibrary only
// checks that the file exists; loading happens in Acquire.
func FindLibrary(explicit string) (Library, error) {
	var searched []string
	try := func(path, source, reason string) (Library, bool) {
		st, err := os.Stat(path)
		switch {
		case err != nil:
			searched = append(searched, fmt.Sprintf("%s (%s): missing", path, source))
			return Library{}, false
		case st.IsDir():
			searched = append(searched, fmt.Sprintf("%s (%s): a directory", path, source))
			return Library{}, false
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			abs = path
		}
		return Library{Path: abs, Source: source, Reason: reason}, true
	}
	notFound := func() (Library, error) {
		return Library{}, &LibraryError{Err: ErrLibraryNotFound, Searched: searched}
	}

	if explicit != "" {
		if lib, ok := try(explicit, SourceOption, "path given as an option"); ok {
			return lib, nil
		}
		return notFound()
	}
	if env := os.Getenv(EnvLibraryPath); env != "" {
		if lib, ok := try(env, SourceEnv, "named by "+EnvLibraryPath); ok {
			return lib, nil
		}
		return notFound()
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		exeDir := filepath.Dir(exe)
		if lib, ok := try(filepath.Join(exeDir, "libonnxruntime.so"), SourceExecutable,
			"next to the executable "+exe); ok {
			return lib, nil
		}
		for _, dir := range []string{exeDir, filepath.Dir(exeDir)} {
			if lib, ok := try(filepath.Join(dir, projectLib), SourceExecutable,
				"project install found from the executable "+exe); ok {
				return lib, nil
			}
		}
	}
	if dir := userDataDir(); dir != "" {
		if lib, ok := try(filepath.Join(dir, "sedd", "onnxruntime", "libonnxruntime.so"), SourceUser,
			"per-user install"); ok {
			return lib, nil
		}
	}
	for _, dir := range systemDirs {
		for _, name := range systemNames {
			if lib, ok := try(filepath.Join(dir, name), SourceSystem, "system library directory"); ok {
				return lib, nil
			}
		}
	}
	return notFound()
}

// userDataDir returns ${XDG_DATA_HOME:-$HOME/.local/share}, or "" when
// neither variable is usable.
func userDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return d
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share")
	}
	return ""
}
