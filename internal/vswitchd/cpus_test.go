package vswitchd

import (
	"os"
	"runtime"
	"testing"
)

func TestSetCPUs(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment: SetCPUs leaves it alone by design")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	if got := SetCPUs(1); got != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("SetCPUs(1) = %d, GOMAXPROCS %d", got, runtime.GOMAXPROCS(0))
	}
	if got := SetCPUs(0); got != DefaultCPUs() || got < 1 || got > max(1, runtime.NumCPU()/2) {
		t.Fatalf("SetCPUs(0) = %d, want half of %d CPUs, at least 1", got, runtime.NumCPU())
	}
}
