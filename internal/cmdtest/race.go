//go:build race

package cmdtest

// raceEnabled makes Build build the command under test with -race too, so
// that `go test -race` also checks the subprocesses.
const raceEnabled = true
