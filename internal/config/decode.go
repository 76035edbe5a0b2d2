package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxDocument bounds a JSON document read by Decode.
const MaxDocument = 4 << 20

// ErrTooLarge: a document over MaxDocument bytes.
var ErrTooLarge = errors.New("document too large")

// Decode reads exactly one JSON value into v, refusing unknown fields,
// trailing data and documents over MaxDocument bytes, so that a typo in a
// field name is an error rather than a silent default.
func Decode(r io.Reader, v any) error {
	lr := &io.LimitedReader{R: r, N: MaxDocument + 1}
	d := json.NewDecoder(lr)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("%w: over %d bytes", ErrTooLarge, MaxDocument)
		}
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if d.More() {
		return errors.New("invalid JSON: more than one value")
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the value")
	}
	return nil
}
