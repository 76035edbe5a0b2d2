package vswitchd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/web"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vswitch test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// TestWebOverTLS: with --web-cert/--web-key the console is served over
// TLS (any address may then be used), its login cookie is Secure and the
// token file sits beside the store; without them a non-loopback address
// is refused, and a certificate that cannot be read is named.
func TestWebOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	sock := filepath.Join(dir, "vswitchd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Store: filepath.Join(dir, "v.db"), Socket: sock, Ready: ready, BPFDir: "",
			Web: web.Options{Addr: "127.0.0.1:0", Cert: cert, Key: key}})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	con, err := client.New(sock).Console(false)
	if err != nil || !strings.HasPrefix(con.URL, "https://127.0.0.1:") {
		t.Fatalf("vswitchctl console: %q %v, want an https URL", con.URL, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "console-token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the token file beside the store: %v %v", fi, err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(con.URL)
	if err != nil || resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("login over TLS: %v %v, want 303 with a Secure cookie", resp, err)
	}
	resp, err = hc.Get(strings.Split(con.URL, "/login")[0] + "/v1/topology")
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("the API over TLS without the token: %v %v, want 401", resp, err)
	}
	if resp, err := http.Get(strings.Replace(strings.Split(con.URL, "/login")[0], "https", "http", 1) + "/"); err == nil && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the TLS listener: %d, want 400", resp.StatusCode)
	}

	for _, tc := range []struct {
		o    web.Options
		want string
	}{
		{web.Options{Addr: "0.0.0.0:0"}, "--web-cert and --web-key"},
		{web.Options{Addr: "127.0.0.1:0", Cert: filepath.Join(dir, "missing.pem"), Key: key}, "--web-cert " + filepath.Join(dir, "missing.pem")},
	} {
		d := t.TempDir()
		err := Run(context.Background(), Options{Store: filepath.Join(d, "v.db"), Socket: filepath.Join(d, "s.sock"), BPFDir: "", Web: tc.o})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--web %+v: %v, want an error naming %q", tc.o, err, tc.want)
		}
		if tc.o.Cert == "" && !errors.Is(err, web.ErrNeedsTLS) {
			t.Errorf("not ErrNeedsTLS: %v", err)
		}
	}
}
