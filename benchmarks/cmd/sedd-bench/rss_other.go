//go:build !linux

package main

// resetPeakRSS is only possible on Linux.
func resetPeakRSS() bool { return false }

// peakRSS is only measured on Linux; elsewhere it reports 0 (unknown).
func peakRSS() int64 { return 0 }
