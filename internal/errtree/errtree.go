// Package errtree finds every error of one type in an error tree, through
// fmt.Errorf's %w and errors.Join, where errors.As finds only the first.
package errtree

// All returns, in order, every error of type T in err's tree; it does not
// look inside a T.
func All[T error](err error) []T {
	var out []T
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if t, ok := e.(T); ok {
			out = append(out, t)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
