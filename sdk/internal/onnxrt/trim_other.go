//go:build !linux

package onnxrt

// giveBackMemory does nothing where the C allocator is not glibc's.
func giveBackMemory() {}
