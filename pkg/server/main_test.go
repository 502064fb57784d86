package server

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fuzzSrv != nil { // started lazily by FuzzKVRequest
		fuzzSrv.Close()
	}
	os.Exit(code)
}
