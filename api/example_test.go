package api_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sedd-go/sedd/api"
)

// A client of `sedd serve --addr 127.0.0.1:8080`: fill the gap between a
// prompt and a suffix with 12 tokens, seeded.
func ExampleClient_Generate() {
	c, err := api.NewClient("http://127.0.0.1:8080", nil)
	if err != nil {
		log.Fatal(err)
	}
	req := &api.GenerateRequest{Prompt: "The jury", Suffix: " and then it rained.", Stream: new(false),
		Options: api.Options{NumPredict: 12, Seed: new(uint64(7)), Temperature: new(0.9)}}
	err = c.Generate(context.Background(), req, func(r api.GenerateResponse) error {
		fmt.Printf("%q (seed %d, %d network calls)\n", r.Response, r.Seed, r.NetworkCalls)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
