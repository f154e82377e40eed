package diffusion_test

import (
	"context"
	"fmt"
	"math"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// scoreFunc adapts an ordinary function to diffusion.ScoreFunc.
type scoreFunc func(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error)

func (f scoreFunc) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	return f(ctx, x, sigma, batch, length)
}

// copyModel is the exact score of a data distribution that is a single
// sequence, target, on the absorbing graph: a masked position's only possible
// token is its target, with ratio 1/(e^σ - 1) to the mask.
func copyModel(g diffusion.Absorbing, target []int64) diffusion.ScoreFunc {
	var logScore, lse []float32
	return scoreFunc(func(_ context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
		n := g.States()
		logScore = make([]float32, batch*length*n)
		lse = make([]float32, batch*length)
		for b := range batch {
			em1 := math.Expm1(float64(sigma[b]))
			for i := range length {
				k := b*length + i
				row := logScore[k*n : (k+1)*n]
				for j := range row {
					row[j] = float32(math.Inf(-1))
				}
				if x[k] == g.Mask() {
					row[g.Mask()] = 0
					row[target[i]] = float32(-math.Log(em1))
					lse[k] = row[target[i]]
				} else {
					row[x[k]] = 0
					row[g.Mask()] = float32(math.Log(em1))
					lse[k] = row[g.Mask()]
				}
			}
		}
		return diffusion.Scores{Batch: batch, Length: length, N: n, LogScore: logScore, LSE: lse}, nil
	})
}

func ExampleNewSampler() {
	g := diffusion.Absorbing{Tokens: 10}
	target := []int64{3, 1, 4, 1, 5, 9, 2, 6}
	s, err := diffusion.NewSampler(diffusion.Config{
		Graph:     g,
		Noise:     diffusion.LogLinear{Eps: 1e-3},
		Predictor: diffusion.Analytic,
		Steps:     16,
		Denoise:   true,
		Batch:     2,
		Length:    len(target),
		Seed:      1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tokens, err := s.Run(context.Background(), copyModel(g, target))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tokens[:8])
	fmt.Println(tokens[8:])
	// Output:
	// [3 1 4 1 5 9 2 6]
	// [3 1 4 1 5 9 2 6]
}

// A prompt and a suffix are fixed spans; the Progress callback watches the
// masks disappear and could stop the run by returning an error.
func ExampleSampler_Run() {
	g := diffusion.Absorbing{Tokens: 10}
	target := []int64{3, 1, 4, 1, 5, 9, 2, 6}
	s, err := diffusion.NewSampler(diffusion.Config{
		Graph:   g,
		Noise:   diffusion.LogLinear{Eps: 1e-3},
		Steps:   4,
		Denoise: true,
		Batch:   1,
		Length:  8,
		Fixed:   []diffusion.Span{{Start: 0, Tokens: []int64{7, 7}}, {Start: 7, Tokens: []int64{0}}},
		Progress: func(st diffusion.Step) error {
			masks := 0
			for _, tok := range st.Tokens { // one row
				if tok == g.Mask() {
					masks++
				}
			}
			fmt.Printf("step %d/%d t=%.4g masks=%d\n", st.Index, st.Steps, st.T, masks)
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tokens, err := s.Run(context.Background(), copyModel(g, target))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tokens)
	// Output:
	// step 1/5 t=0.75 masks=3
	// step 2/5 t=0.5 masks=3
	// step 3/5 t=0.25 masks=1
	// step 4/5 t=1e-05 masks=0
	// step 5/5 t=0 masks=0
	// [7 7 4 1 5 9 2 0]
}

func ExampleAbsorbing_ScoreEntropy() {
	// At the true score of a masked position whose clean token is 2, the score
	// entropy is 0: s_2 = -log(e^σ - 1), every other token impossible.
	g := diffusion.Absorbing{Tokens: 4}
	sigma := 0.5
	s2 := float64(float32(-math.Log(math.Expm1(sigma)))) // as a float32 model returns it
	inf := float32(math.Inf(-1))
	logScore := []float32{inf, inf, float32(s2), inf, 0}
	fmt.Println(math.Abs(g.ScoreEntropy(2, g.Mask(), sigma, logScore, s2)) < 1e-12)
	// A log-sum-exp 0.5 too high (mass on impossible tokens) costs r·(e^0.5 - 1), r = 1/(e^σ - 1).
	fmt.Printf("%.4f\n", g.ScoreEntropy(2, g.Mask(), sigma, logScore, s2+0.5))
	// Output:
	// true
	// 1.0000
}

// The first-hitting sampler unmasks one position per network call, at the
// exact time the reverse process would: a sequence with two fixed tokens and
// six free ones takes six calls, whatever the noise schedule.
func ExampleFirstHitting() {
	g := diffusion.Absorbing{Tokens: 10}
	target := []int64{3, 1, 4, 1, 5, 9, 2, 6}
	calls := 0
	model := copyModel(g, target)
	counted := scoreFunc(func(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
		calls++
		return model.Score(ctx, x, sigma, batch, length)
	})
	s, err := diffusion.NewSampler(diffusion.Config{
		Graph:     g,
		Noise:     diffusion.Geometric{SigmaMin: 1e-4, SigmaMax: 20},
		Predictor: diffusion.FirstHitting,
		Batch:     1,
		Length:    len(target),
		Fixed:     []diffusion.Span{{Start: 0, Tokens: []int64{3, 1}}},
		Seed:      1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tokens, err := s.Run(context.Background(), counted)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tokens, calls)
	// Output:
	// [3 1 4 1 5 9 2 6] 6
}

// Block-wise sampling generates a sequence longer than the network's window:
// here 20 positions in windows of 8 sharing 3 with the previous one, the
// network never seeing more than 8.
func ExampleConfig_window() {
	g := diffusion.Absorbing{Tokens: 4}
	longest := 0
	// A network that always predicts token 2, to show the windows.
	model := scoreFunc(func(_ context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
		longest = max(longest, length)
		n := g.States()
		logScore := make([]float32, batch*length*n)
		lse := make([]float32, batch*length)
		for k := range lse {
			row := logScore[k*n : (k+1)*n]
			for j := range row {
				row[j] = float32(math.Inf(-1))
			}
			row[x[k]] = 0
			if x[k] == g.Mask() {
				row[2] = float32(-math.Log(math.Expm1(float64(sigma[k/length]))))
				lse[k] = row[2]
			} else {
				row[g.Mask()] = 0
			}
		}
		return diffusion.Scores{Batch: batch, Length: length, N: n, LogScore: logScore, LSE: lse}, nil
	})
	s, err := diffusion.NewSampler(diffusion.Config{
		Graph: g, Noise: diffusion.LogLinear{Eps: 1e-3}, Predictor: diffusion.FirstHitting,
		Batch: 1, Length: 20, Window: 8, Overlap: 3,
		Fixed: []diffusion.Span{{Start: 0, Tokens: []int64{1}}, {Start: 19, Tokens: []int64{0}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tokens, err := s.Run(context.Background(), model)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tokens, longest)
	// Output:
	// [1 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 0] 8
}
