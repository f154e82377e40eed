package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/sdk"
)

// Timing of the live displays.
const (
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
	m    *sdk.Model
	mask bool // the model has a mask state (absorbing graph)

	bar  *cmdline.Bar // nil: no progress bar
	last time.Time    // last redraw of the screen

	frames io.Writer // nil: no --show-steps
	live   bool      // frames are redrawn in place
	width  int       // terminal size for live frames
	height int
	lines  int // physical lines of the live frame on screen
}

func newView(m *sdk.Model, stdout, stderr *os.File, showSteps, jsonOut bool) *view {
	v := &view{m: m, mask: m.Info().MaskID >= 0}
	if showSteps {
		v.frames = stdout
		if jsonOut {
			v.frames = stderr
		}
		f := v.frames.(*os.File)
		v.live = cmdline.IsTerminal(f)
		v.width, v.height = cmdline.TermSize(f)
	}
	// A live frame already shows the step; a bar on a terminal would fight
	// with it.
	if !v.live {
		v.bar = cmdline.NewBar(stderr, "sampling", "steps")
	}
	return v
}

// step shows one step of a sdk.Model.Stream.
func (v *view) step(p sdk.Step) {
	now := time.Now()
	last := p.Index == p.Steps
	throttled := !last && now.Sub(v.last) < redrawEvery
	switch {
	case v.frames != nil && !v.live:
		v.plainFrame(p)
	case v.frames != nil && !throttled:
		v.liveFrame(p)
		v.last = now
	}
	v.bar.Update(p.Index, p.Steps)
}

// done removes the live displays before the results are printed.
func (v *view) done() {
	v.bar.Clear()
	if v.live && v.lines > 0 {
		fmt.Fprintf(v.frames, "\x1b[%dA\r\x1b[J", v.lines)
		v.lines = 0
	}
}

// header describes the state of a step.
func (v *view) header(p sdk.Step) string {
	s := fmt.Sprintf("step %d/%d  t=%.4f", p.Index, p.Steps, p.T)
	if v.mask {
		positions := 0
		for _, r := range p.Tokens {
			positions += len(r)
		}
		s += fmt.Sprintf("  masked %d/%d", p.Masked, positions)
	}
	return s
}

// rows renders every sample of p with glyph for masks, one line each.
func (v *view) rows(p sdk.Step, glyph string) []string {
	out := make([]string, len(p.Tokens))
	for b, row := range p.Tokens {
		out[b] = printable(v.m.Decode(row, glyph))
		if len(p.Tokens) > 1 {
			out[b] = fmt.Sprintf("[%d] %s", b, out[b])
		}
	}
	return out
}

// plainFrame writes one frame per step: a header line, then one line per row.
func (v *view) plainFrame(p sdk.Step) {
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
func (v *view) liveFrame(p sdk.Step) {
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
