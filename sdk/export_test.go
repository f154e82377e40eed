package sdk

// SetObserved makes f see every error a public function or method of the
// package returns (for TestMain's check that each has exactly one kind).
func SetObserved(f func(error)) { observed = f }
