/* envrepro: create and release an ONNX Runtime environment, nothing else.
 *
 * A C-level reproduction of the crash of issue 21 (SIGSEGV inside CreateEnv
 * when the process's command line is large), against the same shared library
 * the SDK loads, without Go or onnxruntime_go in the way:
 *
 *   cc -O1 -o envrepro envrepro.c -ldl -I "$(go list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go)"
 *   ./envrepro LIB [LOGLEVEL] [PADDING...]
 *
 * LIB is libonnxruntime.so, LOGLEVEL 0 (verbose) to 4 (fatal), default 3
 * (error, the SDK's); extra arguments only make the command line longer.
 * It prints "ok" and exits 0 when the environment was created and released.
 * See ../../README.md (or run_envrepro.sh) for the measured results.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "onnxruntime_c_api.h"

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s LIB [LOGLEVEL] [PADDING...]\n", argv[0]);
		return 2;
	}
	int level = argc > 2 ? atoi(argv[2]) : ORT_LOGGING_LEVEL_ERROR;
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	const OrtApiBase *(*get_base)(void) = (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
	if (!get_base) {
		fprintf(stderr, "no OrtGetApiBase in %s\n", argv[1]);
		return 1;
	}
	const OrtApi *api = get_base()->GetApi(ORT_API_VERSION);
	if (!api) {
		fprintf(stderr, "the library does not serve ORT API version %d\n", ORT_API_VERSION);
		return 1;
	}
	OrtEnv *env = NULL;
	OrtStatus *st = api->CreateEnv((OrtLoggingLevel)level, "envrepro", &env);
	if (st) {
		fprintf(stderr, "CreateEnv: %s\n", api->GetErrorMessage(st));
		api->ReleaseStatus(st);
		return 1;
	}
	api->ReleaseEnv(env);
	printf("ok\n");
	return 0;
}
