package main

import (
	"cmp"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// sweepPlot describes one figure of a sweep: which value of a row is drawn,
// with which interval.
type sweepPlot struct {
	file, title, ylabel string
	logY                bool
	// value returns the point and its interval (low ≤ value ≤ high; equal
	// when the value has none).
	value func(r sweepRow) (y, low, high float64)
	// reference is false for values real text does not have (time).
	reference bool
	// judge marks figures of the judge's scores, drawn only for a sweep
	// with --judge; rows without a judge score are left out of them.
	judge bool
}

var sweepPlots = []sweepPlot{
	{file: "ppl.png", title: "Generative perplexity (95% interval over samples)", ylabel: "generative perplexity", logY: true, reference: true,
		value: func(r sweepRow) (float64, float64, float64) { return r.Perplexity, r.Low, r.High }},
	{file: "entropy.png", title: "Unigram entropy of samples (± 1.96 SE)", ylabel: "entropy (nats)", reference: true,
		value: func(r sweepRow) (float64, float64, float64) {
			return r.Entropy, r.Entropy - sweepZ95*r.EntropyStdErr, r.Entropy + sweepZ95*r.EntropyStdErr
		}},
	{file: "judge-ppl.png", title: "Generative perplexity under the judge (95% interval over samples)", ylabel: "judge's perplexity",
		logY: true, reference: true, judge: true,
		value: func(r sweepRow) (float64, float64, float64) {
			if r.Judge == nil {
				return math.NaN(), math.NaN(), math.NaN()
			}
			return r.Judge.Perplexity, r.Judge.Low, r.Judge.High
		}},
	{file: "time.png", title: "Sampling time", ylabel: "seconds per sample", logY: true,
		value: func(r sweepRow) (float64, float64, float64) {
			return r.SecondsPerSample, r.SecondsPerSample, r.SecondsPerSample
		}},
}

// sweepZ95 is the two-sided 95% quantile of the standard normal distribution.
const sweepZ95 = 1.959963984540054

// sweepPlotFiles names the plot files of a sweep.
func sweepPlotFiles() []string {
	var names []string
	for _, sp := range sweepPlots {
		names = append(names, sp.file)
	}
	return names
}

// writeSweepPlots draws every figure of sweepPlots as a PNG in dir: network
// calls per sample on a log x axis (what a sample costs, whatever the
// sampler: steps plus the denoiser for analytic and euler, one call per
// unmasked position for first-hitting), one line per sampler with interval
// bars, and the reference text as a dashed horizontal line.
func writeSweepPlots(dir string, rep *sweepReport) error {
	for _, sp := range sweepPlots {
		if sp.judge && rep.Judge == "" {
			continue
		}
		p, err := sweepFigure(sp, rep)
		if err != nil {
			return fmt.Errorf("plotting %s: %w", sp.file, err)
		}
		if err := writeAtomic(dir, sp.file, func(w io.Writer) error { return savePNG(p, w) }); err != nil {
			return err
		}
	}
	return nil
}

func sweepFigure(sp sweepPlot, rep *sweepReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = sp.title
	if sp.judge && rep.JudgeName != "" {
		p.Title.Text = "Perplexity under " + rep.JudgeName + " (95% interval)"
	}
	if rep.ModelName != "" {
		p.Title.Text += " — " + rep.ModelName
	}
	p.X.Label.Text = "network evaluations per sample"
	p.Y.Label.Text = sp.ylabel
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	var stepsSeen []int // network evaluations of the sample rows
	for _, r := range rep.Rows {
		if r.Kind == "sample" && r.NFE > 0 && !slices.Contains(stepsSeen, r.NFE) {
			stepsSeen = append(stepsSeen, r.NFE)
			// Label one of two counts that would print over each other
			// (128 first-hitting calls beside 129 analytic ones).
			crowded := slices.ContainsFunc(ticks, func(t plot.Tick) bool {
				return t.Label != "" && max(t.Value, float64(r.NFE)) < 1.1*min(t.Value, float64(r.NFE))
			})
			label := strconv.Itoa(r.NFE)
			if crowded {
				label = ""
			}
			ticks = append(ticks, plot.Tick{Value: float64(r.NFE), Label: label})
		}
	}
	if len(ticks) == 0 {
		return nil, fmt.Errorf("no sample rows")
	}
	p.X.Tick.Marker = ticks
	minX, maxX := float64(stepsSeen[0]), float64(stepsSeen[0])
	for _, s := range stepsSeen {
		minX, maxX = min(minX, float64(s)), max(maxX, float64(s))
	}
	if minX == maxX {
		// A single step count: widen the axis so the log scale has a range.
		minX, maxX = minX/1.5, maxX*1.5
	}
	p.X.Min, p.X.Max = minX/1.15, maxX*1.15
	if sp.logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	} else {
		p.Y.Tick.Marker = linearTicks{}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(12)
	var preds []string
	for _, r := range rep.Rows {
		if r.Kind == "sample" && !slices.Contains(preds, r.Predictor) {
			preds = append(preds, r.Predictor)
		}
	}
	for i, pred := range preds {
		var pts plotter.XYs
		var errs plotter.YErrors
		for _, r := range rep.Rows {
			if r.Kind != "sample" || r.Predictor != pred || r.NFE <= 0 {
				continue
			}
			y, lo, hi := sp.value(r)
			if math.IsNaN(y) {
				continue
			}
			x := float64(r.NFE)
			if r.CallsPerSample > 0 {
				x = r.CallsPerSample
			}
			pts = append(pts, plotter.XY{X: x, Y: y})
			errs = append(errs, struct{ Low, High float64 }{y - lo, hi - y})
		}
		// a curve runs along the network evaluations, whatever the order of
		// its rows (an adaptive sampler's knobs need not increase with them)
		idx := make([]int, len(pts))
		for k := range idx {
			idx[k] = k
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(pts[a].X, pts[b].X) })
		sorted, sortedErrs := make(plotter.XYs, len(pts)), make(plotter.YErrors, len(pts))
		for k, j := range idx {
			sorted[k], sortedErrs[k] = pts[j], errs[j]
		}
		pts, errs = sorted, sortedErrs
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		c := plotutil.Color(i)
		line.Color, line.Width, line.Dashes = c, vg.Points(1.5), plotutil.Dashes(i)
		points.Color, points.Shape = c, plotutil.Shape(i)
		bars, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, errs})
		if err != nil {
			return nil, err
		}
		bars.Color = c
		p.Add(line, points, bars)
		p.Legend.Add(pred, line, points)
	}
	for _, r := range rep.Rows {
		if r.Kind != "reference" || !sp.reference {
			continue
		}
		y, _, _ := sp.value(r)
		if math.IsNaN(y) {
			continue
		}
		ref, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: y}, {X: p.X.Max, Y: y}})
		if err != nil {
			return nil, err
		}
		ref.LineStyle = draw.LineStyle{Color: color.Gray{Y: 60}, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(6), vg.Points(4)}}
		p.Add(ref)
		p.Legend.Add("reference text", ref)
	}
	// Room above the data for the legend, and a margin below it.
	if sp.logY {
		r := p.Y.Max / p.Y.Min
		p.Y.Min, p.Y.Max = p.Y.Min/math.Pow(r, 0.08), p.Y.Max*math.Pow(r, 0.35)
		if p.Y.Max/p.Y.Min < 2.5 {
			// Too narrow a range for ticks at 1, 2 and 5: widen it.
			mid := math.Sqrt(p.Y.Min * p.Y.Max)
			p.Y.Min, p.Y.Max = mid/1.6, mid*1.6
		}
	} else {
		span := max(p.Y.Max-p.Y.Min, 1e-3*max(1, math.Abs(p.Y.Max)))
		p.Y.Min, p.Y.Max = p.Y.Min-0.08*span, p.Y.Max+0.35*span
	}
	return p, nil
}

// logTicks labels a log axis at 1, 2 and 5 times powers of ten (and marks
// the other integers between as minor ticks), so that even a range within one
// decade gets labels.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// linearTicks labels a linear axis every 1, 2 or 5 times a power of ten,
// whichever gives 4 to 10 labels, with as many decimals as that spacing
// needs, and puts four minor ticks between labels. (plot.DefaultTicks can
// round two neighbouring labels of a narrow range to the same text.)
type linearTicks struct{}

func (linearTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return nil
	}
	step, decimals := 0.0, 0
	for e := math.Floor(math.Log10(hi - lo)); step == 0; e-- {
		for _, m := range []float64{5, 2, 1} {
			if (hi-lo)/(m*math.Pow(10, e)) >= 4 {
				step = m * math.Pow(10, e)
				decimals = max(0, int(-e))
				break
			}
		}
	}
	var ticks []plot.Tick
	minor := step / 5
	for i := math.Ceil(lo / minor); i*minor <= hi; i++ {
		v := i * minor
		t := plot.Tick{Value: v}
		if k := math.Round(v / step); math.Abs(v-k*step) < minor/2 {
			t.Label = strconv.FormatFloat(k*step, 'f', decimals, 64)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// savePNG renders p at 7 × 4.5 inches, 96 dots per inch, to a PNG file.
// (Plot.Save would link every vector format into the binary too.)
func savePNG(p *plot.Plot, w io.Writer) error {
	c := vgimg.NewWith(vgimg.UseWH(7*vg.Inch, 4.5*vg.Inch), vgimg.UseDPI(96))
	p.Draw(draw.New(c))
	_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	return err
}
