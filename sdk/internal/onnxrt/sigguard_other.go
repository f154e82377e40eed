//go:build !unix

package onnxrt

import (
	"errors"
	"syscall"
)

// Without Unix signals there is nothing to guard (see sigguard_unix.go).
func recordGoSignals() bool { return false }

func repairGoSignals() []syscall.Signal { return nil }

func installForeignHandler(syscall.Signal) error { return errors.ErrUnsupported }

func hasForeignHandler(syscall.Signal) bool { return false }
