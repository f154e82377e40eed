package onnxrt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// isolate makes FindLibrary see only what a test sets up: no environment
// variable, a working directory without a project install, and an empty
// per-user data directory. It returns that data directory.
func isolate(t *testing.T) string {
	t.Helper()
	t.Setenv(EnvLibraryPath, "")
	t.Chdir(t.TempDir())
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	return data
}

// fakeLib writes a file named like the library (its contents do not matter
// to FindLibrary, which only checks that it exists).
func fakeLib(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not really a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindLibraryOrder(t *testing.T) {
	data := isolate(t)
	root := t.TempDir()
	project := fakeLib(t, filepath.Join(root, "third_party", "onnxruntime", "libonnxruntime.so"))
	user := fakeLib(t, filepath.Join(data, "sedd", "onnxruntime", "libonnxruntime.so"))
	explicit := fakeLib(t, filepath.Join(t.TempDir(), "custom.so"))
	fromEnv := fakeLib(t, filepath.Join(t.TempDir(), "env.so"))
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}

	lib, err := FindLibrary("")
	if err != nil || lib.Source != SourceUser || lib.Path != user {
		t.Fatalf("outside the project: %+v, %v; want the per-user install %s", lib, err, user)
	}

	// A project install above the working directory is not looked at: the
	// library does not load code from wherever its caller runs.
	t.Chdir(deep)
	if lib, err = FindLibrary(""); err != nil || lib.Source != SourceUser || lib.Path != user {
		t.Fatalf("from a directory below a project install %s: %+v, %v; want the per-user install %s", project, lib, err, user)
	}

	t.Setenv(EnvLibraryPath, fromEnv)
	if lib, err = FindLibrary(""); err != nil || lib.Source != SourceEnv || lib.Path != fromEnv {
		t.Fatalf("with %s set: %+v, %v; want %s", EnvLibraryPath, lib, err, fromEnv)
	}

	if lib, err = FindLibrary(explicit); err != nil || lib.Source != SourceOption || lib.Path != explicit {
		t.Fatalf("explicit path: %+v, %v; want %s", lib, err, explicit)
	}
	if lib.Reason == "" {
		t.Error("Library.Reason is empty")
	}
}

func TestFindLibraryMissing(t *testing.T) {
	isolate(t)
	missing := filepath.Join(t.TempDir(), "nope.so")
	tests := []struct {
		name     string
		explicit string
		env      string
	}{
		{"explicit path missing", missing, ""},
		{"environment variable names a missing file", "", missing},
		{"explicit path is a directory", t.TempDir(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvLibraryPath, tt.env)
			// A project install exists but must not hide the mistake.
			root := t.TempDir()
			fakeLib(t, filepath.Join(root, "third_party", "onnxruntime", "libonnxruntime.so"))
			t.Chdir(root)
			_, err := FindLibrary(tt.explicit)
			var le *LibraryError
			if !errors.Is(err, ErrLibraryNotFound) || !errors.As(err, &le) {
				t.Fatalf("FindLibrary error = %v, want a *LibraryError wrapping ErrLibraryNotFound", err)
			}
			for _, want := range []string{"scripts/install-onnxruntime.sh", EnvLibraryPath, "release"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error message lacks %q: %v", want, err)
				}
			}
		})
	}
}

func TestAcquireBadLibrary(t *testing.T) {
	needLibrary(t)
	if References() != 0 {
		t.Fatalf("environment still referenced (%d) by an earlier test", References())
	}
	bad := fakeLib(t, filepath.Join(t.TempDir(), "libonnxruntime.so"))
	_, err := Acquire(bad)
	var le *LibraryError
	if !errors.Is(err, ErrLibraryLoad) || !errors.As(err, &le) || le.Path == "" {
		t.Fatalf("Acquire(%s) = %v, want a *LibraryError wrapping ErrLibraryLoad", bad, err)
	}
	// Another shared object that is not ONNX Runtime.
	if libc := "/lib/x86_64-linux-gnu/libc.so.6"; fileExists(libc) {
		if _, err := Acquire(libc); !errors.Is(err, ErrLibraryLoad) {
			t.Errorf("Acquire(libc) = %v, want ErrLibraryLoad", err)
		}
	}
	if References() != 0 {
		t.Errorf("failed Acquire left %d references", References())
	}
	// The real library still loads afterwards.
	env, err := Acquire("")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Release(); err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestEnvironmentIsReferenceCounted(t *testing.T) {
	lib := needLibrary(t)
	if References() != 0 {
		t.Fatalf("environment still referenced (%d) by an earlier test", References())
	}
	a, err := Acquire("")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version() == "" || a.Library().Path != lib.Path {
		t.Errorf("Version %q, Library %+v", a.Version(), a.Library())
	}
	t.Logf("ONNX Runtime %s from %s (%s)", a.Version(), a.Library().Path, a.Library().Reason)
	b, err := Acquire(lib.Path)
	if err != nil {
		t.Fatal(err)
	}
	if References() != 2 {
		t.Errorf("References() = %d after two Acquire, want 2", References())
	}
	link := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.Symlink(lib.Path, link); err != nil {
		t.Fatal(err)
	}
	c, err := Acquire(link)
	if err != nil {
		t.Fatalf("Acquire through a symbolic link to the loaded library: %v", err)
	}
	c.Release()
	other := fakeLib(t, filepath.Join(t.TempDir(), "libonnxruntime.so"))
	if _, err := Acquire(other); !errors.Is(err, ErrLibraryConflict) {
		t.Errorf("Acquire of another library while loaded: %v, want ErrLibraryConflict", err)
	}
	for range 2 {
		if err := a.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if References() != 1 {
		t.Errorf("References() = %d after one (doubled) Release, want 1", References())
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if References() != 0 {
		t.Errorf("References() = %d after the last Release, want 0", References())
	}

	// Create and destroy the environment many times from many goroutines.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				e, err := Acquire("")
				if err != nil {
					errs <- err
					return
				}
				if e.Version() == "" {
					errs <- errors.New("empty version")
				}
				if err := e.Release(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if References() != 0 {
		t.Errorf("References() = %d after concurrent use, want 0", References())
	}
}
