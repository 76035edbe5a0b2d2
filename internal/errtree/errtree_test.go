package errtree

import (
	"errors"
	"fmt"
	"testing"
)

type myErr struct{ n int }

func (e *myErr) Error() string { return fmt.Sprint("my ", e.n) }

func TestAll(t *testing.T) {
	err := fmt.Errorf("top: %w", errors.Join(&myErr{1}, errors.New("other"), fmt.Errorf("deep: %w", &myErr{2})))
	got := All[*myErr](err)
	if len(got) != 2 || got[0].n != 1 || got[1].n != 2 {
		t.Fatalf("All = %v", got)
	}
	if All[*myErr](nil) != nil || All[*myErr](errors.New("x")) != nil {
		t.Fatal("found errors where there are none")
	}
}
