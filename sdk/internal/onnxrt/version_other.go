//go:build !unix

package onnxrt

// libraryVersion is not looked up on this system; onnxruntime_go reports a
// library it cannot use when it loads it.
func libraryVersion(string) (string, error) { return "", nil }
