package cmdline

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Timing of the progress bar.
const (
	// barDelay is how long a run goes before the bar appears, so that quick
	// runs print nothing to stderr.
	barDelay = 300 * time.Millisecond
	// redrawEvery is the shortest time between two redraws.
	redrawEvery = 40 * time.Millisecond
)

// Bar is a progress bar redrawn in place with \r on a terminal. It appears
// only once a run has gone on for barDelay. A nil *Bar draws nothing.
type Bar struct {
	w            io.Writer
	label, units string
	start, last  time.Time
	drawn        bool
}

// NewBar returns a bar on w, or nil when w is not a terminal.
func NewBar(w *os.File, label, units string) *Bar {
	if !IsTerminal(w) {
		return nil
	}
	return &Bar{w: w, label: label, units: units, start: time.Now()}
}

// Update shows done out of total.
func (b *Bar) Update(done, total int) {
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

// Clear removes the bar from the screen.
func (b *Bar) Clear() {
	if b != nil && b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.drawn = false
	}
}
