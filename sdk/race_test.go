//go:build race

package sdk_test

// raceEnabled is true when the tests run under the race detector, whose
// shadow memory grows with the goroutines it has seen and is never given
// back: resident-memory bounds do not hold there.
const raceEnabled = true
