package diffusion

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestTimeIndependentCache: the independent model's masked rows are
// log p_j - log(e^σ - 1), a time-independent network in the RADD sense, so
// skipping the calls of steps in which no token moved must give the tokens
// of the uncached run, with at most one call per unmasking event plus one
// (Length + 1 for one row), many steps or not, blocks or not, and in a batch
// at most that many evaluations of each row: a call recomputes only the rows
// that moved. (With the σ term left out of the reuse, every case here gives
// other tokens.)
func TestTimeIndependentCache(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		pred                  Predictor
		batch, length, window int
		steps                 int
		temperature           float64
		maxCalls, maxRows     int
	}{
		{"analytic 1024 steps, one row", Analytic, 1, 16, 0, 1024, 0, 17, 17},
		{"euler 1024 steps, one row", Euler, 1, 16, 0, 1024, 0, 17, 17},
		{"analytic 512 steps, three rows", Analytic, 3, 12, 0, 512, 0, 3*12 + 1, 3 * 12},
		{"analytic 1024 steps, eight rows", Analytic, 8, 16, 0, 1024, 0, 8*16 + 1, 8 * 16},
		{"analytic 256 steps with a temperature", Analytic, 1, 16, 0, 256, 0.7, 17, 17},
		{"analytic 256 steps in blocks", Analytic, 1, 24, 12, 256, 0, 24 + 3, 24 + 3},
		{"analytic 256 steps, four rows in blocks", Analytic, 4, 24, 12, 256, 0, 4*24 + 3, 4 * (24 + 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			win := tc.length
			if tc.window > 0 {
				win = tc.window
			}
			cfg := Config{Graph: absorb5, Noise: logLin, Predictor: tc.pred, Steps: tc.steps, Denoise: true, Batch: tc.batch,
				Length: tc.length, Seed: 17, Temperature: tc.temperature, Fixed: []Span{{Start: 0, Tokens: []int64{2}}}}
			if tc.window > 0 {
				cfg.Window, cfg.Overlap = tc.window, 6
			}
			plain := newIndependent(absorb5, win, 3)
			want, err := sample(context.Background(), plain, cfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg.TimeIndependent = true
			cached := newIndependent(absorb5, win, 3)
			got, err := sample(context.Background(), cached, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("cached tokens differ:\n%v\n%v", got, want)
			}
			if cached.calls > tc.maxCalls || cached.calls >= plain.calls {
				t.Errorf("%d network calls cached (%d uncached), want at most %d", cached.calls, plain.calls, tc.maxCalls)
			}
			if cached.rows > tc.maxRows {
				t.Errorf("%d rows evaluated cached, want at most %d", cached.rows, tc.maxRows)
			}
			t.Logf("%d calls (%d rows) instead of %d (%d rows)", cached.calls, cached.rows, plain.calls, plain.rows)
		})
	}
}

func TestTimeIndependentErrors(t *testing.T) {
	_, err := NewSampler(Config{Graph: uniform4, Noise: geo, Steps: 4, Batch: 1, Length: 4, TimeIndependent: true})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("uniform graph: %v", err)
	}
	assertRunAllocs(t, Config{Graph: absorb5, Noise: logLin, Steps: 64, Denoise: true, Batch: 2, Length: 16, TimeIndependent: true}, 16)
}
