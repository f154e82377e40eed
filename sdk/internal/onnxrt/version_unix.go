//go:build unix

package onnxrt

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

// The two first members of OrtApiBase (onnxruntime_c_api.h): GetApi, then
// GetVersionString. Only the second is called here: GetApi of a version the
// library does not serve prints to stderr.
typedef struct {
	const void *(*get_api)(unsigned int);
	const char *(*get_version_string)(void);
} sedd_api_base;

typedef const sedd_api_base *(*sedd_get_api_base)(void);

// sedd_ort_version writes the version of the ONNX Runtime library at path to
// out (size n): 0 on success, 1 when it cannot be loaded (the loader's
// message in out), 2 when it has no OrtGetApiBase.
static int sedd_ort_version(const char *path, char *out, size_t n) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(out, n, "%s", e ? e : "dlopen failed");
		return 1;
	}
	sedd_get_api_base f = (sedd_get_api_base)dlsym(h, "OrtGetApiBase");
	if (!f) {
		dlclose(h);
		return 2;
	}
	const sedd_api_base *base = f();
	const char *v = base && base->get_version_string ? base->get_version_string() : "";
	snprintf(out, n, "%s", v ? v : "");
	dlclose(h);
	return 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// libraryVersion loads the library at path on its own, asks it for its
// version without asking for an API version (which would make an old
// library print to stderr), and unloads it again.
func libraryVersion(path string) (string, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [512]C.char
	switch C.sedd_ort_version(cpath, &buf[0], C.size_t(len(buf))) {
	case 0:
		return C.GoString(&buf[0]), nil
	case 1:
		return "", fmt.Errorf("the dynamic loader refused it: %s", C.GoString(&buf[0]))
	}
	return "", errors.New("it has no OrtGetApiBase: not an ONNX Runtime library")
}
