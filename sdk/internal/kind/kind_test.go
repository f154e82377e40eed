package kind

import (
	"errors"
	"fmt"
	"testing"
)

func TestKinds(t *testing.T) {
	sentinel := New(ErrBadModel, "malformed manifest")
	wrapped := fmt.Errorf("sedd.json: %w", sentinel)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"a sentinel has its kind", sentinel, ErrBadModel},
		{"and keeps it when wrapped", wrapped, ErrBadModel},
		{"Wrap gives an error of none its kind", Wrap(ErrBadRequest, errors.New("x")), ErrBadRequest},
		{"Wrap leaves an error's own kind alone", Wrap(ErrBadRequest, wrapped), ErrBadModel},
		{"a plain error has none", errors.New("x"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.want {
				t.Fatalf("Of(%v) = %v, want %v", tc.err, got, tc.want)
			}
			n := 0
			for _, k := range All {
				if errors.Is(tc.err, k) {
					n++
				}
			}
			if tc.want != nil && n != 1 {
				t.Fatalf("%v matches %d kinds, want 1", tc.err, n)
			}
		})
	}
	if !errors.Is(wrapped, sentinel) || wrapped.Error() != "sedd.json: malformed manifest" {
		t.Fatalf("the sentinel itself is still found, and the message kept: %v", wrapped)
	}
	if Wrap(ErrBadModel, nil) != nil {
		t.Fatal("Wrap(nil) must stay nil")
	}
}
