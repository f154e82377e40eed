package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/sedd-go/sedd/sdk"
)

// Timing of the live displays.
const (
	// barDelay is how long a run goes before the progress bar appears, so
	// that quick runs print nothing to stderr.
	barDelay = 300 * time.Millisecond
	// redrawEvery is the shortest time between two redraws on a terminal; the
	// first and the last state are always drawn.
	redrawEvery = 40 * time.Millisecond
)

// Mask glyphs for --show-steps.
const (
	maskOnTerminal = "░"
	maskInFrames   = "_"
)

// view shows a sampling run as it goes: a progress bar on stderr when stderr
// is a terminal, and with --show-steps the sequence itself, redrawn in place
// when its stream is a terminal and as one plain frame per step otherwise.
// With --json the frames go to stderr, so that stdout stays JSON lines.
type view struct {
	m *sdk.Model

	bar  *bar      // nil: no progress bar
	last time.Time // last redraw of the screen

	frames io.Writer // nil: no --show-steps
	live   bool      // frames are redrawn in place
	width  int       // terminal size for live frames
	height int
	lines  int // physical lines of the live frame on screen
}

func newView(m *sdk.Model, stdout, stderr *os.File, showSteps, jsonOut bool) *view {
	v := &view{m: m}
	if showSteps {
		v.frames = stdout
		if jsonOut {
			v.frames = stderr
		}
		f := v.frames.(*os.File)
		v.live = isTerminal(f)
		v.width, v.height = termSize(f)
	}
	// A live frame already shows the step; a bar on a terminal would fight
	// with it.
	if !v.live {
		v.bar = newBar(stderr, "sampling", "steps")
	}
	return v
}

// progress is the sdk.SampleRequest.Progress callback.
func (v *view) progress(p sdk.Progress) error {
	now := time.Now()
	last := p.Step == p.Steps
	throttled := !last && now.Sub(v.last) < redrawEvery
	switch {
	case v.frames != nil && !v.live:
		v.plainFrame(p)
	case v.frames != nil && !throttled:
		v.liveFrame(p)
		v.last = now
	}
	v.bar.update(p.Step, p.Steps)
	return nil
}

// done removes the live displays before the results are printed.
func (v *view) done() {
	v.bar.clear()
	if v.live && v.lines > 0 {
		fmt.Fprintf(v.frames, "\x1b[%dA\r\x1b[J", v.lines)
		v.lines = 0
	}
}

// bar is a progress bar redrawn in place with \r on a terminal. It appears
// only once a run has gone on for barDelay. A nil *bar draws nothing.
type bar struct {
	w            io.Writer
	label, units string
	start, last  time.Time
	drawn        bool
}

// newBar returns a bar on w, or nil when w is not a terminal.
func newBar(w *os.File, label, units string) *bar {
	if !isTerminal(w) {
		return nil
	}
	return &bar{w: w, label: label, units: units, start: time.Now()}
}

// update shows done out of total.
func (b *bar) update(done, total int) {
	if b == nil {
		return
	}
	now := time.Now()
	if now.Sub(b.start) < barDelay || (done < total && now.Sub(b.last) < redrawEvery) {
		return
	}
	b.last = now
	const width = 30
	filled := width * min(done, total) / max(total, 1)
	elapsed := now.Sub(b.start)
	eta := time.Duration(float64(elapsed) / float64(max(done, 1)) * float64(total-done))
	fmt.Fprintf(b.w, "\r\x1b[K%s [%s%s] %d/%d %s  %.1fs, %.1fs left", b.label,
		strings.Repeat("█", filled), strings.Repeat("·", width-filled),
		done, total, b.units, elapsed.Seconds(), eta.Seconds())
	b.drawn = true
}

// clear removes the bar from the screen.
func (b *bar) clear() {
	if b != nil && b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}

// header describes the state of a step.
func (v *view) header(p sdk.Progress) string {
	s := fmt.Sprintf("step %d/%d  t=%.4f", p.Step, p.Steps, p.T)
	if v.m.Mask() >= 0 {
		s += fmt.Sprintf("  masked %d/%d", p.Masked, p.Batch*p.Length)
	}
	return s
}

// rows renders every row of p with glyph for masks, one line each.
func (v *view) rows(p sdk.Progress, glyph string) []string {
	out := make([]string, p.Batch)
	for b := range out {
		out[b] = printable(v.m.Render(p.Row(b), glyph))
		if p.Batch > 1 {
			out[b] = fmt.Sprintf("[%d] %s", b, out[b])
		}
	}
	return out
}

// plainFrame writes one frame per step: a header line, then one line per row.
func (v *view) plainFrame(p sdk.Progress) {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n", v.header(p))
	for _, r := range v.rows(p, maskInFrames) {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	io.WriteString(v.frames, b.String())
}

// liveFrame redraws the frame in place: cursor up over the previous frame,
// clear to the end of the screen, write the new one. Rows are cut to fit the
// terminal, since the cursor cannot move above its top line.
func (v *view) liveFrame(p sdk.Progress) {
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", v.lines)
	}
	rows := v.rows(p, maskOnTerminal)
	if room := max(v.height-2, 2); len(rows) > room {
		rows = append(rows[:room-1], fmt.Sprintf("… and %d more samples", len(rows)-room+1))
	}
	perRow := max((v.height-2)/len(rows), 1)
	v.lines = 0
	for i, l := range append([]string{v.header(p)}, rows...) {
		if i > 0 {
			l = clip(l, perRow*v.width)
		}
		b.WriteString(l)
		b.WriteByte('\n')
		v.lines += physicalLines(l, v.width)
	}
	io.WriteString(v.frames, b.String())
}

// clip cuts s to at most cells terminal cells, ending it with "…" when cut.
func clip(s string, cells int) string {
	if displayWidth(s) <= cells {
		return s
	}
	used := 0
	for i, r := range s {
		if used+runeWidth(r) > cells-1 {
			return s[:i] + "…"
		}
		used += runeWidth(r)
	}
	return s
}

// physicalLines is the number of terminal lines s takes at the given width.
func physicalLines(s string, width int) int {
	n := displayWidth(s)
	if n == 0 || width <= 0 {
		return 1
	}
	return (n + width - 1) / width
}

// displayWidth is the number of terminal cells s takes.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// runeWidth is the number of cells r takes: 0 for combining marks, 2 for
// East Asian wide characters and emoji, 1 otherwise. It is an approximation
// that is right for the text models produce.
func runeWidth(r rune) int {
	switch {
	case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || r == 0x200B:
		return 0
	case r >= 0x1100 && r <= 0x115F, r >= 0x2E80 && r <= 0xA4CF && r != 0x303F,
		r >= 0xAC00 && r <= 0xD7A3, r >= 0xF900 && r <= 0xFAFF, r >= 0xFE30 && r <= 0xFE4F,
		r >= 0xFF00 && r <= 0xFF60, r >= 0xFFE0 && r <= 0xFFE6,
		r >= 0x1F300 && r <= 0x1F64F, r >= 0x1F900 && r <= 0x1F9FF, r >= 0x20000 && r <= 0x3FFFD:
		return 2
	}
	return 1
}

// printable makes s safe to show on one line: newlines become "↵" and other
// control characters spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return '↵'
		case unicode.IsControl(r):
			return ' '
		}
		return r
	}, s)
}
