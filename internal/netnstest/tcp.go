package netnstest

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// TCPTransfer sends size pseudo-random bytes over TCP from a namespace to
// a listener at toIP in another, fails the test unless every byte arrives
// with the same SHA-256, and logs the rate.
func TCPTransfer(t testing.TB, from, to *NS, toIP string, size int64) {
	t.Helper()
	l := to.Listen(t, net.JoinHostPort(toIP, "0"))
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		done <- r
	}()
	c := from.Dial(t, l.Addr().String())
	h := sha256.New()
	src := io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size)
	start := time.Now()
	if _, err := io.Copy(io.MultiWriter(c, h), src); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	var r result
	select {
	case r = <-done:
	case <-time.After(120 * time.Second):
		t.Fatal("receiver did not finish")
	}
	if r.err != nil || r.n != size {
		t.Fatalf("received %d of %d bytes: %v", r.n, size, r.err)
	}
	if r.sum != [32]byte(h.Sum(nil)) {
		t.Fatal("SHA-256 of the received data differs from the sent data")
	}
	el := time.Since(start)
	t.Logf("TCP %d MB in %v (%.2f Gbit/s)", size>>20, el.Round(time.Millisecond), float64(size*8)/el.Seconds()/1e9)
}
