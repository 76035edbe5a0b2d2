package web

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckOptions(t *testing.T) {
	tests := []struct {
		o    Options
		want string // "" ok
	}{
		{Options{Addr: "127.0.0.1:8470"}, ""},
		{Options{Addr: "[::1]:8470"}, ""},
		{Options{Addr: "localhost:8470"}, ""},
		{Options{Addr: "0.0.0.0:8470"}, "needs TLS"},
		{Options{Addr: ":8470"}, "needs TLS"},
		{Options{Addr: "192.0.2.1:8470"}, "--web-cert and --web-key"},
		{Options{Addr: "192.0.2.1:8470", Cert: "c.pem", Key: "k.pem"}, ""},
		{Options{Addr: "127.0.0.1:8470", Cert: "c.pem"}, "give both or neither"},
		{Options{Addr: "8470"}, "want host:port"},
	}
	for _, tt := range tests {
		err := CheckOptions(tt.o)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.o, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: %v, want an error saying %q", tt.o, err, tt.want)
		}
	}
	if err := CheckOptions(Options{Addr: "0.0.0.0:1"}); !errors.Is(err, ErrNeedsTLS) {
		t.Errorf("not ErrNeedsTLS: %v", err)
	}
}

// console returns a console over an API that answers every request with
// its method and path, listening on a test server.
func console(t *testing.T, file string) (*Console, *httptest.Server) {
	t.Helper()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "api "+r.Method+" "+r.URL.Path)
	})
	c, err := New(Options{TokenFile: file}, api, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	c.serveAt(srv.URL, srv.URL[strings.LastIndex(srv.URL, ":")+1:])
	return c, srv
}

func TestToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state", "console-token")
	c, _ := console(t, file)
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	again, _ := console(t, file)
	if again.token != c.token || len(c.token) != 64 {
		t.Fatalf("a restart made a new token (%q, %q)", c.token, again.token)
	}
	old := c.token
	u, err := c.Rotate()
	if err != nil || c.token == old || !strings.Contains(u, "/login?code=") || strings.Contains(u, c.token) {
		t.Fatalf("Rotate: %q %v", u, err)
	}
	if b, _ := os.ReadFile(file); strings.TrimSpace(string(b)) != c.token {
		t.Fatal("the rotated token is not in the file")
	}
}

func do(t *testing.T, method, url string, hdr map[string]string) (int, string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func TestAccess(t *testing.T) {
	c, srv := console(t, filepath.Join(t.TempDir(), "console-token"))
	cookie := c.cookieName() + "=" + session(c.token)
	origin := srv.URL
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		body               string
	}{
		{"page without token", "GET", "/", nil, 401, "vswitchctl console"},
		{"asset without token", "GET", "/app.js", nil, 401, ""},
		{"API without token", "GET", "/v1/topology", nil, 401, `"unauthorized"`},
		{"wrong cookie", "GET", "/v1/topology", map[string]string{"Cookie": c.cookieName() + "=nope"}, 401, ""},
		{"wrong bearer", "GET", "/v1/topology", map[string]string{"Authorization": "Bearer nope"}, 401, ""},
		{"the token as the cookie", "GET", "/v1/topology", map[string]string{"Cookie": c.cookieName() + "=" + c.token}, 401, ""},
		{"the session as a bearer token", "GET", "/v1/topology", map[string]string{"Authorization": "Bearer " + session(c.token)}, 401, ""},
		{"login with a wrong code", "GET", "/login?code=nope", nil, 401, ""},
		{"page with cookie", "GET", "/", map[string]string{"Cookie": cookie}, 200, "<title>vswitch console</title>"},
		{"API read with cookie", "GET", "/v1/topology", map[string]string{"Cookie": cookie}, 200, "api GET /v1/topology"},
		{"API read with bearer", "GET", "/v1/topology", map[string]string{"Authorization": "Bearer " + c.token}, 200, "api GET"},
		{"write from the console", "POST", "/v1/switches", map[string]string{"Cookie": cookie, "Origin": origin, "Sec-Fetch-Site": "same-origin"}, 200, "api POST"},
		{"write without Origin", "POST", "/v1/switches", map[string]string{"Cookie": cookie}, 403, ""},
		{"write from another site", "DELETE", "/v1/switches/x", map[string]string{"Cookie": cookie, "Origin": "http://evil.example"}, 403, ""},
		{"write from a sibling site", "PUT", "/v1/host", map[string]string{"Cookie": cookie, "Origin": origin, "Sec-Fetch-Site": "same-site"}, 403, ""},
		{"script write with bearer", "POST", "/v1/switches", map[string]string{"Authorization": "Bearer " + c.token}, 200, "api POST"},
		{"token management", "GET", "/v1/console", map[string]string{"Cookie": cookie}, 403, "unix socket"},
		{"token rotation", "POST", "/v1/console/token", map[string]string{"Cookie": cookie, "Origin": origin}, 403, "unix socket"},
	}
	for _, tt := range tests {
		status, body, resp := do(t, tt.method, srv.URL+tt.path, tt.hdr)
		if status != tt.status || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %d %q, want %d with %q", tt.name, status, body, tt.status, tt.body)
		}
		if status == 401 && len(body) > 200 {
			t.Errorf("%s: a 401 says more than that: %q", tt.name, body)
		}
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: security headers missing: %v", tt.name, resp.Header)
		}
	}
}

// TestLogin: a login URL carries a one-time code, not the token; the code
// logs in once (the cookie is derived from the token, not the token), not
// again, not after it expired, not after the token was rotated; the token
// itself is no login.
func TestLogin(t *testing.T) {
	c, srv := console(t, filepath.Join(t.TempDir(), "console-token"))
	u := c.URL()
	if !strings.HasPrefix(u, srv.URL+"/login?code=") || strings.Contains(u, c.token) {
		t.Fatalf("login URL %q: want %s/login?code=..., without the token", u, srv.URL)
	}
	status, _, resp := do(t, "GET", u, nil)
	if status != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q, want 303 to /", status, resp.Header.Get("Location"))
	}
	cks := resp.Cookies()
	if len(cks) != 1 || cks[0].Name != c.cookieName() || !strings.HasPrefix(cks[0].Name, CookieName+"-") || cks[0].Value != session(c.token) || cks[0].Value == c.token || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie: %+v, want %s with the session derived from the token (not the token), HttpOnly, SameSite=Strict", cks, c.cookieName())
	}
	expired := c.URL()
	c.mu.Lock()
	for code := range c.codes {
		if strings.HasSuffix(expired, code) {
			c.codes[code] = time.Now().Add(-time.Second)
		}
	}
	c.mu.Unlock()
	if status, _, _ := do(t, "GET", expired, nil); status != http.StatusUnauthorized {
		t.Errorf("login with an expired code: %d, want 401", status)
	}
	beforeRotation := c.URL()
	if _, err := c.Rotate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, url string }{
		{"the same code again", u},
		{"a code from before a rotation", beforeRotation},
		{"the token", srv.URL + "/login?token=" + c.token},
	} {
		if status, _, _ := do(t, "GET", tc.url, nil); status != http.StatusUnauthorized {
			t.Errorf("login with %s: %d, want 401", tc.name, status)
		}
	}
	for range maxLoginCodes + 10 { // unused codes are bounded
		c.URL()
	}
	if len(c.codes) > maxLoginCodes {
		t.Fatalf("%d login codes kept, want at most %d", len(c.codes), maxLoginCodes)
	}
}

// TestRotateLogsOut: after a rotation the old cookie is refused and an
// open event stream ends.
func TestRotateLogsOut(t *testing.T) {
	c, srv := console(t, filepath.Join(t.TempDir(), "console-token"))
	cookie := c.cookieName() + "=" + session(c.token)
	req, _ := http.NewRequest("GET", srv.URL+"/v1/events", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", resp, err)
	}
	ended := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); ended <- err }()
	if _, err := c.Rotate(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream of the old token did not end")
	}
	if status, _, _ := do(t, "GET", srv.URL+"/v1/topology", map[string]string{"Cookie": cookie}); status != 401 {
		t.Fatalf("old cookie after rotation: %d, want 401", status)
	}
	if status, _, _ := do(t, "GET", srv.URL+"/v1/topology", map[string]string{"Cookie": c.cookieName() + "=" + session(c.token)}); status != 200 {
		t.Fatalf("new token: %d, want 200", status)
	}
}

// TestBundleIsBuilt: the committed bundle is what internal/web/ui/build.sh
// makes from src/ with the pinned packages (make lab installs them).
func TestBundleIsBuilt(t *testing.T) {
	if _, err := os.Stat("ui/node_modules/.bin/esbuild"); err != nil {
		t.Skip("the console's npm packages are not installed (make lab installs them)")
	}
	out := t.TempDir()
	cmd := exec.Command("npm", "run", "--silent", "build", "--", "--outfile="+filepath.Join(out, "app.js"))
	cmd.Dir = "ui"
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the bundle: %v\n%s", err, b)
	}
	for _, f := range []string{"app.js", "app.js.LEGAL.txt"} {
		built, _ := os.ReadFile(filepath.Join(out, f))
		committed, _ := os.ReadFile(filepath.Join("static", f))
		if !bytes.Equal(built, committed) {
			t.Errorf("static/%s is not what ui/src builds to: run make console and commit it", f)
		}
	}
}

// TestConcurrentRotations: the token in memory is the one in the file,
// whatever the order of rotations that run at once.
func TestConcurrentRotations(t *testing.T) {
	file := filepath.Join(t.TempDir(), "console-token")
	c, _ := console(t, file)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { c.Rotate() })
	}
	wg.Wait()
	b, _ := os.ReadFile(file)
	if strings.TrimSpace(string(b)) != c.token {
		t.Fatal("after rotations at once, the file holds another token than the console")
	}
	if left, _ := filepath.Glob(file + ".*"); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
