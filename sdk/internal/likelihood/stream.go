package likelihood

import (
	"encoding/binary"
	"math/rand/v2"
)

// Stream purposes: each (sequence, index) pair has one stream per purpose.
const (
	purposeTime  = "sedd-lik/time   "
	purposeNoise = "sedd-lik/noise  "
)

// stream is a reseedable ChaCha8 generator. One (seed, sequence, index,
// purpose) always gives the same numbers, on every platform.
type stream struct {
	src *rand.ChaCha8
	r   *rand.Rand
}

func newStream() *stream {
	src := rand.NewChaCha8([32]byte{})
	return &stream{src: src, r: rand.New(src)}
}

// reset points the stream at the start of (seed, seq, index, purpose). The
// purpose string is 16 bytes, so seq and index are limited to 32 bits each,
// far above any realistic corpus or K.
func (s *stream) reset(seed uint64, seq, index int, purpose string) *rand.Rand {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint32(key[8:], uint32(seq))
	binary.LittleEndian.PutUint32(key[12:], uint32(index))
	copy(key[16:], purpose)
	s.src.Seed(key)
	return s.r
}
