package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
)

// TestMain points the tests at the project's own ONNX Runtime install when
// ONNXRUNTIME_SHARED_LIBRARY_PATH is unset, and checks after them that every
// error a public function or method returned to any test has exactly one of
// the SDK's kinds (or is the context's error): errors get their kind where
// they are born, and this is what proves that none escapes without one.
func TestMain(m *testing.M) {
	var mu sync.Mutex
	seen := map[string]int{} // message → how many times
	var bad []string
	sdk.SetObserved(func(err error) {
		n := 0
		for _, k := range []error{sdk.ErrBadRequest, sdk.ErrBadModel, sdk.ErrRuntimeUnavailable,
			sdk.ErrCUDAUnavailable, sdk.ErrClosed, context.Canceled, context.DeadlineExceeded} {
			if errors.Is(err, k) {
				n++
			}
		}
		// A panic of the caller's own callback is handed back as it is, of no
		// kind (docs/ERRORS.md).
		var panicked *sdk.CallbackPanic
		if n == 0 && errors.As(err, &panicked) {
			n = 1
		}
		mu.Lock()
		defer mu.Unlock()
		seen[err.Error()]++
		if n != 1 {
			bad = append(bad, fmt.Sprintf("%d kinds: %v", n, err))
		}
	})
	code := testlib.Run(m)
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kinds: %d distinct errors returned to the tests, each checked\n", len(seen))
	}
	if code == 0 {
		if len(bad) > 0 {
			sort.Strings(bad)
			fmt.Fprintf(os.Stderr, "kinds: %d errors returned without exactly one kind:\n", len(bad))
			for _, b := range bad {
				fmt.Fprintln(os.Stderr, "  "+b)
			}
			code = 1
		}
	}
	os.Exit(code)
}
