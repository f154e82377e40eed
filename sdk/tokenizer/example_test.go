package tokenizer_test

import (
	"fmt"

	"github.com/sedd-go/sedd/sdk/tokenizer"
)

func ExampleTokenizer() {
	// The tiny exports use the byte tokenizer: one id per byte.
	tok, err := tokenizer.Load("../testdata/tiny-absorb/tokenizer.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, _ := tok.Encode("Hi, 😀")
	fmt.Println(tok.VocabSize(), ids)
	text, _ := tok.Decode(ids[:len(ids)-1]) // the emoji's last byte dropped
	fmt.Printf("%q\n", text)
	// Output:
	// 256 [72 105 44 32 240 159 152 128]
	// "Hi, \xf0\x9f\x98"
}
