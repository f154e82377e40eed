package manifest_test

import (
	"errors"
	"fmt"

	"github.com/sedd-go/sedd/sdk/internal/manifest"
)

func ExampleLoad() {
	m, err := manifest.Load("../../testdata/tiny-absorb")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Name, m.Graph, m.Tokens, m.N(), m.Noise.Type, m.ONNX.File)
	// Output: tiny-absorb absorb 256 257 loglinear model.onnx
}

func ExampleParse_errors() {
	_, err := manifest.Parse([]byte(`{"format": 2}`))
	fmt.Println(errors.Is(err, manifest.ErrFormat))
	var fe *manifest.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field)
	}
	// Output:
	// true
	// format
}
