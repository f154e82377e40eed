//go:build race

package main

// raceEnabled makes TestMain build the binary under test with -race too, so
// that `go test -race` also checks the subprocesses.
const raceEnabled = true
