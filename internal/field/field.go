// Package field is the one error type for invalid input anywhere in
// vswitch — a flag, an API body, a config file, a stored record: it names
// the field, the value given and what is allowed, so that every entry point
// reports bad input the same way.
package field

import (
	"errors"
	"fmt"

	"github.com/vswitch/vswitch/internal/errtree"
)

// ErrInvalid is wrapped by every *Error.
var ErrInvalid = errors.New("invalid input")

// Error says that Field's Value is not allowed, and what is.
type Error struct {
	Field   string `json:"field"`
	Value   string `json:"value"`
	Allowed string `json:"allowed"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %q is invalid: %s", e.Field, e.Value, e.Allowed)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// New returns an *Error.
func New(fieldName, value, allowed string) *Error {
	return &Error{Field: fieldName, Value: value, Allowed: allowed}
}

// List collects every problem of one input, to report them all at once.
type List []*Error

// Add appends a problem.
func (l *List) Add(fieldName, value, allowed string) { *l = append(*l, New(fieldName, value, allowed)) }

// Err returns nil for an empty list, else an error whose Unwrap lists the
// problems (errors.Join semantics) and which wraps ErrInvalid.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// All returns every *Error inside err (joined or wrapped), in order.
func All(err error) []*Error { return errtree.All[*Error](err) }
