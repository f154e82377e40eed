//go:build !unix

package ortcache

import "errors"

func mkfifo(string) error { return errors.New("no FIFOs on this system") }
