// Package web serves vswitch's web console: the console's page and
// assets (embedded in the binary) and the same REST API as the unix
// socket, on a TCP listener that vswitchd opens only when asked (--web).
//
// Every request needs the console's token: a random secret kept in the
// state directory (mode 0600). `vswitchctl console` prints a login URL
// with a one-time code for it (valid for LoginCodeTTL, never the token
// itself, so that a browser's history or a proxy's log keeps nothing
// that logs in again). The login sets a session cookie derived from the
// token (HttpOnly, SameSite=Strict); scripts may send the token as a
// bearer token instead. Without it the answer is
// 401 and nothing else: no page, asset or API answer before login. A
// write must come from the console's own origin (Origin and
// Sec-Fetch-Site are checked), so that no other site can change anything
// through a logged-in browser. A non-loopback address needs TLS.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// CookieName is the start of the session cookie's name: the console's
// port follows it (a browser sends a host's cookies to all its ports, so
// two consoles on one host would otherwise log each other out).
const CookieName = "vswitch-console"

// DefaultAddr is the address the docs suggest (loopback).
const DefaultAddr = "127.0.0.1:8470"

// ErrNeedsTLS refuses a non-loopback address without a certificate.
var ErrNeedsTLS = errors.New("a non-loopback address needs TLS")

// Options configure the console's listener.
type Options struct {
	Addr      string // host:port
	Cert, Key string // TLS certificate and key files; both or neither
	TokenFile string // where the token is kept (made on first start)
}

// CheckOptions refuses what cannot be served safely: a non-loopback
// address without TLS, a certificate without its key.
func CheckOptions(o Options) error {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("--web %q: %w (want host:port, e.g. %s)", o.Addr, err, DefaultAddr)
	}
	if (o.Cert == "") != (o.Key == "") {
		return fmt.Errorf("--web-cert %q and --web-key %q: give both or neither", o.Cert, o.Key)
	}
	if o.Cert == "" && !loopback(host) {
		return fmt.Errorf("--web %q: %w: give --web-cert and --web-key, or listen on a loopback address such as %s", o.Addr, ErrNeedsTLS, DefaultAddr)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Console is the console's server: token, login, same-origin checks,
// assets, and the API behind them.
type Console struct {
	api       http.Handler
	tokenFile string
	tls       bool
	log       *slog.Logger

	rotating sync.Mutex // one Rotate at a time: the file and the token agree

	mu      sync.Mutex
	token   string
	rotated chan struct{}        // closed when the token is replaced: open streams end
	base    string               // scheme://host:port, once listening
	cookie  string               // the session cookie's name, once listening
	codes   map[string]time.Time // one-time login codes and when they expire
}

// LoginCodeTTL is how long a login URL's code is good for (once).
const LoginCodeTTL = 5 * time.Minute

// maxLoginCodes bounds the codes not used yet: a new one past it pushes
// out the one that expires first.
const maxLoginCodes = 64

// New returns the console over the API handler, with the token read from
// o.TokenFile or made there.
func New(o Options, api http.Handler, log *slog.Logger) (*Console, error) {
	c := &Console{api: api, tokenFile: o.TokenFile, tls: o.Cert != "", log: log, rotated: make(chan struct{}), codes: map[string]time.Time{}}
	b, err := os.ReadFile(o.TokenFile)
	switch {
	case err == nil && len(strings.TrimSpace(string(b))) >= 32:
		c.token = strings.TrimSpace(string(b))
	case err == nil || errors.Is(err, fs.ErrNotExist):
		if _, err := c.Rotate(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("console token %s: %w", o.TokenFile, err)
	}
	return c, nil
}

// Rotate replaces the token: every browser logged in with the old one is
// out (its open event streams end) and must log in with the new URL.
func (c *Console) Rotate() (string, error) {
	c.rotating.Lock()
	defer c.rotating.Unlock()
	b := make([]byte, 32)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	if err := writeSecret(c.tokenFile, tok); err != nil {
		return "", fmt.Errorf("console token %s: %w", c.tokenFile, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = tok
	close(c.rotated)
	c.rotated = make(chan struct{})
	clear(c.codes) // no URL printed before logs in with the new token
	return c.urlLocked(), nil
}

// writeSecret replaces path's content with s, mode 0600, atomically (a
// temporary file of its own, renamed over it).
func writeSecret(path, s string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone once renamed
	_, err = f.WriteString(s + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path) // CreateTemp made it 0600
}

// URL is a login URL with a new one-time code ("" before Serve).
func (c *Console) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urlLocked()
}

func (c *Console) urlLocked() string {
	if c.base == "" {
		return ""
	}
	now := time.Now()
	for code, exp := range c.codes {
		if now.After(exp) {
			delete(c.codes, code)
		}
	}
	if len(c.codes) >= maxLoginCodes {
		var first string
		for code, exp := range c.codes {
			if first == "" || exp.Before(c.codes[first]) {
				first = code
			}
		}
		delete(c.codes, first)
	}
	b := make([]byte, 32)
	rand.Read(b)
	code := hex.EncodeToString(b)
	c.codes[code] = now.Add(LoginCodeTTL)
	return c.base + "/login?code=" + code
}

// redeem takes a login code: whether it was issued, not used and not
// expired. It cannot be used again.
func (c *Console) redeem(code string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.codes[code]
	delete(c.codes, code)
	return ok && time.Now().Before(exp)
}

// Listen opens the console's listener and notes its URL.
func (c *Console) Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--web %s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host, _ = os.Hostname()
	}
	c.serveAt(c.scheme()+"://"+net.JoinHostPort(host, port), port)
	return l, nil
}

// serveAt notes the console's base URL and port (its cookie's name).
func (c *Console) serveAt(base, port string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.cookie = base, CookieName+"-"+port
}

// session is the cookie's value for token: derived from it, so that the
// cookie (which a browser also sends to other ports of the same host) is
// not the token itself, and changes with it.
func session(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("vswitch console session"))
	return hex.EncodeToString(m.Sum(nil))
}

// cookieName is the session cookie's name: CookieName and the port.
func (c *Console) cookieName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cookie
}

// scheme is the console's URL scheme.
func (c *Console) scheme() string {
	if c.tls {
		return "https"
	}
	return "http"
}

// authorized reports whether r carries the current token (a bearer token)
// or its session cookie, how (bearer requests come from scripts, not
// browsers), and the channel that is closed when that token is replaced.
func (c *Console) authorized(r *http.Request) (ok, bearer bool, rotated <-chan struct{}) {
	c.mu.Lock()
	want, rotated := c.token, c.rotated
	c.mu.Unlock()
	if got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
		return same(got, want), true, rotated
	}
	if ck, err := r.Cookie(c.cookieName()); err == nil {
		return same(ck.Value, session(want)), false, rotated
	}
	return false, false, rotated
}

func same(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// sameOrigin reports whether a browser's write comes from the console's
// own page: Sec-Fetch-Site (if sent) says same-origin, and Origin (which
// browsers send on every write) is this server.
func (c *Console) sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return false
	}
	return r.Header.Get("Origin") == c.scheme()+"://"+r.Host
}

// Handler serves the console: login, then the page, its assets and the API.
func (c *Console) Handler() http.Handler {
	assets, _ := fs.Sub(static, "static")
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.URL.Path == "/login" {
			c.login(w, r)
			return
		}
		ok, bearer, rotated := c.authorized(r)
		if !ok {
			unauthorized(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !bearer && !c.sameOrigin(r) {
			http.Error(w, "403 forbidden: a write must come from the console's own page", http.StatusForbidden)
			return
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/console"):
			http.Error(w, "403 forbidden: the console's token is managed on vswitchd's unix socket (vswitchctl console [--rotate])", http.StatusForbidden)
		case strings.HasPrefix(r.URL.Path, "/v1/"):
			c.api.ServeHTTP(w, r.WithContext(untilRotated(r.Context(), rotated)))
		default:
			files.ServeHTTP(w, r)
		}
	})
}

// untilRotated ends a request (an event stream) when the token it was
// let in with is replaced.
func untilRotated(ctx context.Context, rotated <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		select {
		case <-rotated:
		case <-ctx.Done():
		}
	}()
	return ctx
}

// login takes a one-time code from the URL, sets the session's cookie
// and sends the browser to the console (the code leaves the address bar).
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !c.redeem(r.URL.Query().Get("code")) {
		unauthorized(w, r)
		return
	}
	c.mu.Lock()
	want := c.token
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: c.cookieName(), Value: session(want), Path: "/", HttpOnly: true, Secure: c.tls, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// unauthorized answers 401 and nothing else.
func unauthorized(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, `{"error":{"code":"unauthorized","message":"the console's token is required: open the URL that vswitchctl console prints"}}`)
		return
	}
	http.Error(w, "401 unauthorized: open a URL that `vswitchctl console` prints (each logs in once, within 5 minutes)", http.StatusUnauthorized)
}
