/* sessionrepro: create and release an ONNX Runtime session on one model file
 * N times, printing the process's resident memory (VmRSS) every step, to tell
 * a leak of ours from memory ONNX Runtime (or the C allocator) keeps.
 *
 *   cc -O1 -o sessionrepro sessionrepro.c -ldl -I "$(go list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go)"
 *   ORT_DISABLE_TELEMETRY=1 ./sessionrepro LIB MODEL.onnx N STEP [trim]
 *
 * With "trim", malloc_trim(0) runs after every release, which returns the
 * allocator's free memory to the system.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"

static long rss_kb(void) {
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f)) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = atol(line + 6);
		}
	}
	if (f) fclose(f);
	return kb;
}

#define CHECK(x) do { OrtStatus *s_ = (x); if (s_) { fprintf(stderr, "%s\n", api->GetErrorMessage(s_)); return 1; } } while (0)

int main(int argc, char **argv) {
	if (argc < 5) {
		fprintf(stderr, "usage: %s LIB MODEL N STEP [trim]\n", argv[0]);
		return 2;
	}
	int n = atoi(argv[3]), step = atoi(argv[4]), trim = argc > 5 && strcmp(argv[5], "trim") == 0;
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
	const OrtApiBase *(*base)(void) = (const OrtApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
	const OrtApi *api = base()->GetApi(ORT_API_VERSION);
	OrtEnv *env;
	CHECK(api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "sessionrepro", &env));
	for (int i = 0; i <= n; i++) {
		OrtSessionOptions *so;
		OrtSession *s;
		CHECK(api->CreateSessionOptions(&so));
		CHECK(api->SetIntraOpNumThreads(so, 2));
		CHECK(api->CreateSession(env, argv[2], so, &s));
		api->ReleaseSession(s);
		api->ReleaseSessionOptions(so);
		if (trim) malloc_trim(0);
		if (i % step == 0) printf("%d %ld\n", i, rss_kb());
		fflush(stdout);
	}
	api->ReleaseEnv(env);
	return 0;
}
