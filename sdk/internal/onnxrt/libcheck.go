package onnxrt

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
)

// MinVersion is the oldest ONNX Runtime whose C API onnxruntime_go v1.27
// uses (API version 24) is served.
const MinVersion = "1.24"

// checkLibraryFile refuses a file that cannot be a complete shared library
// for this process before anything loads it: loading a truncated ELF object
// maps pages past the end of the file, and the first touch of one kills the
// process with SIGBUS. On Linux it must be an ELF shared object of this
// process's class and machine whose program headers and sections all lie
// within the file. Elsewhere the check is left to the dynamic loader.
func checkLibraryFile(path string) error {
	if goruntime.GOOS != "linux" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	}
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != elf.ELFMAG {
		return errors.New("not an ELF shared library")
	}
	ef, err := elf.NewFile(f)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: its ELF headers point past its end at %d bytes (an interrupted download or copy? install it again)", st.Size())
	}
	if err != nil {
		return fmt.Errorf("a damaged ELF file: %v", err)
	}
	wantMachine, wantClass := elfTarget()
	switch {
	case ef.Type != elf.ET_DYN:
		return fmt.Errorf("an ELF %v, not a shared library", ef.Type)
	case wantMachine != elf.EM_NONE && ef.Machine != wantMachine:
		return fmt.Errorf("built for %v, but this program runs on %v (%s)", ef.Machine, wantMachine, goruntime.GOARCH)
	case ef.Class != wantClass:
		return fmt.Errorf("an %v library, but this program is %v", ef.Class, wantClass)
	}
	need := uint64(0)
	for _, p := range ef.Progs {
		need = max(need, p.Off+p.Filesz)
	}
	for _, s := range ef.Sections {
		if s.Type != elf.SHT_NOBITS {
			need = max(need, s.Offset+s.FileSize)
		}
	}
	if size := uint64(st.Size()); size < need {
		return fmt.Errorf("truncated: %d bytes, but its ELF headers describe %d (an interrupted download or copy? install it again)", size, need)
	}
	return nil
}

// elfTarget returns the ELF machine and class of this process (EM_NONE for
// architectures the check does not know).
func elfTarget() (elf.Machine, elf.Class) {
	class := elf.ELFCLASS64
	if strconv.IntSize == 32 {
		class = elf.ELFCLASS32
	}
	switch goruntime.GOARCH {
	case "amd64":
		return elf.EM_X86_64, class
	case "arm64":
		return elf.EM_AARCH64, class
	case "386":
		return elf.EM_386, class
	case "arm":
		return elf.EM_ARM, class
	case "ppc64le", "ppc64":
		return elf.EM_PPC64, class
	case "s390x":
		return elf.EM_S390, class
	case "riscv64":
		return elf.EM_RISCV, class
	}
	return elf.EM_NONE, class
}

// versionAtLeast reports whether the dotted version v is at least min
// ("1.30.0" ≥ "1.24"). Missing or non-numeric parts count as 0.
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range max(len(a), len(b)) {
		x, y := part(a, i), part(b, i)
		if x != y {
			return x > y
		}
	}
	return true
}

func part(p []string, i int) int {
	if i >= len(p) {
		return 0
	}
	digits := p[i]
	for j, r := range digits {
		if r < '0' || r > '9' {
			digits = digits[:j]
			break
		}
	}
	n, _ := strconv.Atoi(digits)
	return n
}
