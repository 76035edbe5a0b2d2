package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/netnstest"
)

// forward serves addr (a listener inside ns) on a loopback port of the
// test's own namespace, so that a browser outside the namespace reaches
// a daemon inside it. It returns the local address.
func forward(t testing.TB, ns *netnstest.NS, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var up net.Conn
			if err := ns.Do(func() (err error) { up, err = net.Dial("tcp", addr); return err }); err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open[c], open[up] = true, true
			mu.Unlock()
			var once sync.Once
			closeBoth := func() {
				once.Do(func() {
					c.Close()
					up.Close()
					mu.Lock()
					delete(open, c)
					delete(open, up)
					mu.Unlock()
				})
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); closeBoth() }()
			go func() { defer wg.Done(); io.Copy(c, up); closeBoth() }()
		}
	}()
	return l.Addr().String()
}

// webProduct starts a vswitchd in a namespace of its own with its console
// on the namespace's loopback (a port of the kernel's choice).
func webProduct(t testing.TB) *product { return startProduct(t, "--web", "127.0.0.1:0") }

// startProduct starts a vswitchd with args in a namespace of its own; it
// and the VMs it started end with the test.
func startProduct(t testing.TB, args ...string) *product {
	t.Helper()
	vswitchd, vswitchctl := bins(t)
	p := &product{t: t, daemonNS: netnstest.New(t), vswitchd: vswitchd, vswitchctl: vswitchctl, dir: t.TempDir(), args: args}
	t.Cleanup(func() {
		if p.cmd != nil {
			p.kill9()
		}
		p.stopVMs()
	})
	p.start()
	return p
}

// consoleURL asks vswitchctl for a login URL and splits it into the
// console's address inside the daemon's namespace and its login path
// (with a one-time code: each login asks anew).
func consoleURL(t testing.TB, p *product, args ...string) (addr, login string) {
	t.Helper()
	var c api.Console
	if err := json.Unmarshal([]byte(p.must(append([]string{"console", "-o", "json"}, args...)...)), &c); err != nil {
		t.Fatal(err)
	}
	rest, ok := strings.CutPrefix(c.URL, "http://")
	addr, code, ok2 := strings.Cut(rest, "/login?code=")
	if !ok || !ok2 || len(code) != 64 {
		t.Fatalf("vswitchctl console printed %q, want http://ADDR/login?code=<64 hex digits>", c.URL)
	}
	return addr, "/login?code=" + code
}

// TestConsole drives the web console in Debian's Chromium (chromedp): it
// is refused without the token, draws the demo network, creates a switch
// and an adapter through its forms (seen in vswitchctl), shows the API's
// error at the field for a bad VLAN with nothing changed, follows a VLAN
// change made with vswitchctl without a reload, exports SVG, can be used
// with the keyboard, and logs no console errors. Screenshots of each step
// go to $VSWITCH_ARTIFACTS (default: a directory under the system's temp dir).
func TestConsole(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("Debian's chromium is not installed (make lab installs it)")
	}
	artifacts := artifactDir("console")
	t.Logf("screenshots and exports: %s", artifacts)

	p := webProduct(t)
	netnstest.Veth(t, p.daemonNS, "nic0", netnstest.New(t), "eth0") // a NIC an external switch could take
	// The demo network: an internal switch (host adapter) with two VLANs,
	// a private switch with a trunk; three VMs in namespaces.
	ns := map[string]*netnstest.NS{}
	for _, vm := range []string{"web", "db", "app", "extra"} {
		ns[vm] = netnstest.New(t)
	}
	p.must("switch", "add", "lan0", "--type", "internal")
	p.must("switch", "add", "dmz0", "--type", "private")
	for _, vm := range []string{"web", "db", "app"} {
		p.must("vm", "add", vm)
	}
	p.must("adapter", "add", "web/eth0", "--switch", "lan0", "--netns", ns["web"].Name)
	p.must("adapter", "vlan", "web/eth0", "--access", "10")
	p.must("adapter", "add", "db/eth0", "--switch", "lan0", "--netns", ns["db"].Name)
	p.must("adapter", "vlan", "db/eth0", "--access", "20")
	p.must("adapter", "add", "app/eth0", "--switch", "dmz0", "--netns", ns["app"].Name)
	p.must("adapter", "vlan", "app/eth0", "--trunk", "10-20", "--native", "1")

	inner, login := consoleURL(t, p)
	base := "http://" + forward(t, p.daemonNS, inner)

	// Without the token: 401 and nothing else, for the page, an asset, the
	// API and a wrong token; a write from another origin is refused even
	// with the token.
	for _, path := range []string{"/", "/app.js", "/v1/topology", "/v1/events", "/login?code=" + strings.Repeat("0", 64)} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || strings.Contains(string(body), "lan0") || len(body) > 300 {
			t.Fatalf("GET %s without the token: %d\n%s", path, resp.StatusCode, body)
		}
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	if resp, err := client.Get(base + login); err != nil || resp.StatusCode != 200 {
		t.Fatalf("login: %v %v", resp, err)
	}
	if resp, err := http.Get(base + login); err != nil || resp.StatusCode != 401 {
		t.Fatalf("a login code used a second time: %v %v, want 401", resp, err)
	}
	req, _ := http.NewRequest("DELETE", base+"/v1/switches/dmz0", nil)
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("a cross-origin write with the console's cookie: %v %v, want 403", resp, err)
	}
	if !strings.Contains(p.must("switch", "ls"), "dmz0") {
		t.Fatal("a cross-origin write changed the state")
	}

	// The browser; its console's errors are collected from the start.
	b := newBrowser(t, artifacts, p.log)
	var mu sync.Mutex
	var consoleErrors []string
	collecting := true
	go func() {
		for m, err := range chromedp.Console(b.ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				// The browser logs the bad VLAN's refusal (400) itself: expected.
				refused := strings.HasSuffix(m.URL, "/v1/vms/web/adapters/eth1") && strings.Contains(m.Text, "status of 400")
				if collecting && !refused {
					consoleErrors = append(consoleErrors, fmt.Sprintf("%s at %s:%d: %s", m.Type, m.URL, m.Line, m.Text))
				}
				mu.Unlock()
			}
		}
	}()
	do, screenshot := b.do, b.screenshot
	waitJS := b.wait
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	// 1. Without the token the browser gets 401 and no console.
	do("open without the token", chromedp.Navigate(base+"/"))
	body := evalJS[string](b, "the page", `document.body.innerText`)
	if !strings.Contains(body, "401") || strings.Contains(body, "lan0") {
		t.Fatalf("the console without the token shows:\n%s", body)
	}
	screenshot("refused-without-token")
	mu.Lock()
	consoleErrors = nil // the refused page's load is logged as an error by the browser: expected
	mu.Unlock()

	// 2. Logged in: the demo network's picture.
	_, login = consoleURL(t, p) // a code logs in once
	do("log in", chromedp.Navigate(base+login))
	waitJS("the topology drawn", `window.vswitch && vswitch.topo && vswitch.cy.nodes().length > 0`)
	counts := evalJS[struct{ Nodes, Edges int }](b, "count nodes", `({Nodes: vswitch.cy.nodes().length, Edges: vswitch.cy.edges().length})`)
	// 2 switches + lan0's host adapter + 3 adapters + 3 VMs; each port to
	// its switch (4), each adapter to its VM (3).
	if counts.Nodes != 9 || counts.Edges != 7 {
		t.Fatalf("the demo network is drawn with %d nodes and %d edges, want 9 and 7", counts.Nodes, counts.Edges)
	}
	loc := evalJS[string](b, "location", `location.href`)
	if strings.Contains(loc, "code=") {
		t.Fatalf("the login code stayed in the address bar: %s", loc)
	}
	screenshot("topology")

	// 3. A switch through the form.
	do("new switch form", chromedp.Click(css("#new-switch")), chromedp.WaitVisible(css("#dlg-switch")),
		chromedp.SendKeys(css(`#dlg-switch [name=name]`), "test0"),
		chromedp.SetValue(css(`#dlg-switch [name=type]`), "private"))
	// The uplink's choice: the host's NIC, not the loopback or the host adapter lan0 that vswitch made.
	if nics := evalJS[[]string](b, "uplink choice", `[...document.querySelectorAll('#dlg-switch [name=uplink] option')].map(o => o.value)`); fmt.Sprint(nics) != "[ nic0]" {
		t.Fatalf("the uplink choice is %q, want none and nic0", nics)
	}
	screenshot("new-switch-form")
	do("save the switch", chromedp.Click(css(`#dlg-switch button.primary`)))
	waitJS("test0 in the picture", `vswitch.cy.getElementById('sw:test0').nonempty()`)
	if ls := p.must("switch", "ls"); !strings.Contains(ls, "test0") {
		t.Fatalf("the switch made in the console is not in vswitchctl switch ls:\n%s", ls)
	}

	// 4. An adapter through the form: VM web on test0, access VLAN 30.
	do("new adapter form", chromedp.Click(css("#new-adapter")), chromedp.WaitVisible(css("#dlg-adapter")),
		chromedp.SetValue(css(`#dlg-adapter [name=vm]`), "web"),
		chromedp.SendKeys(css(`#dlg-adapter [name=name]`), "eth1"),
		chromedp.SetValue(css(`#dlg-adapter [name=switch]`), "test0"),
		chromedp.SendKeys(css(`#dlg-adapter [name="attachment.namespace"]`), ns["extra"].Name),
		chromedp.SetValue(css(`#dlg-adapter [name="vlan.mode"]`), "access"))
	evalJS[bool](b, "mode change", `document.querySelector('#dlg-adapter [name="vlan.mode"]').dispatchEvent(new Event('change'))`)
	do("access VLAN", chromedp.SendKeys(css(`#dlg-adapter [name="vlan.access"]`), "30"))
	screenshot("new-adapter-form")
	do("save the adapter", chromedp.Click(css(`#dlg-adapter button.primary`)))
	waitJS("web/eth1 in the picture", `vswitch.cy.getElementById('ad:web/eth1').nonempty()`)
	var made string
	for _, ad := range adapters(t, p) {
		if ad.VM == "web" && ad.Name == "eth1" {
			made = ad.VLAN.String() + " on " + ad.Switch
		}
	}
	if made != "access 30 on test0" {
		t.Fatalf("the adapter made in the console: %q, want access 30 on test0", made)
	}
	screenshot("adapter-added")

	// 5. A bad VLAN: the API's error at the field, nothing changed.
	rev := revision(t, p)
	evalJS[bool](b, "select web/eth1", `vswitch.cy.getElementById('ad:web/eth1').emit('tap'); true`)
	waitJS("details of web/eth1", `[...document.querySelectorAll('#details button')].some(b => b.textContent === 'Edit')`)
	evalJS[bool](b, "open the edit form", `[...document.querySelectorAll('#details button')].find(b => b.textContent === 'Edit').click(); true`)
	do("a bad VLAN", chromedp.WaitVisible(css("#dlg-adapter")),
		chromedp.SetValue(css(`#dlg-adapter [name="vlan.access"]`), "5000"),
		chromedp.Click(css(`#dlg-adapter button.primary`)))
	waitJS("the error at the field", `document.querySelector('#dlg-adapter [name="vlan.access"]').getAttribute('aria-invalid') === 'true'`)
	fieldErr := evalJS[string](b, "the field's error", `document.getElementById(document.querySelector('#dlg-adapter [name="vlan.access"]').getAttribute('aria-describedby')).textContent`)
	if !strings.Contains(fieldErr, "5000") || !strings.Contains(fieldErr, "4094") {
		t.Fatalf("the error next to the VLAN field says %q, want the value and what is allowed", fieldErr)
	}
	screenshot("bad-vlan-error-at-field")
	if got := revision(t, p); got != rev {
		t.Fatalf("a refused edit changed the state: revision %s -> %s", rev, got)
	}
	do("cancel", chromedp.Click(css(`#dlg-adapter button[value=cancel]`)))
	// An edit that changes the mode replaces the VLAN setting whole.
	evalJS[bool](b, "edit again", `[...document.querySelectorAll('#details button')].find(b => b.textContent === 'Edit').click(); true`)
	do("to trunk", chromedp.WaitVisible(css("#dlg-adapter")), chromedp.SetValue(css(`#dlg-adapter [name="vlan.mode"]`), "trunk"))
	evalJS[bool](b, "mode change", `document.querySelector('#dlg-adapter [name="vlan.mode"]').dispatchEvent(new Event('change')); true`)
	do("allowed VLANs", chromedp.SendKeys(css(`#dlg-adapter [name="vlan.allowed"]`), "30-31"), chromedp.Click(css(`#dlg-adapter button.primary`)))
	waitJS("the trunk in the picture", `vswitch.cy.getElementById('ad:web/eth1').data('label').includes('trunk 30-31')`)
	for _, ad := range adapters(t, p) {
		if ad.VM == "web" && ad.Name == "eth1" && (ad.VLAN.String() != "trunk 30-31" || ad.VLAN.Access != 0) {
			t.Fatalf("web/eth1 after the edit: %s (access %d), want trunk 30-31 and nothing of access", ad.VLAN.String(), ad.VLAN.Access)
		}
	}

	// 6. A change made with vswitchctl appears without a reload.
	evalJS[bool](b, "mark the page", `window.__sameLoad = true`)
	start := time.Now()
	p.must("adapter", "vlan", "web/eth0", "--access", "11")
	waitJS("the picture follows the CLI", `vswitch.cy.getElementById('ad:web/eth0').data('label').includes('access 11')`)
	t.Logf("a CLI change reached the picture in %v", time.Since(start).Round(time.Millisecond))
	if !evalJS[bool](b, "no reload", `window.__sameLoad === true`) {
		t.Fatal("the page was reloaded to show the change")
	}
	// The VLAN highlight: VLAN 11 leaves web/eth0 (access 11) untagged and
	// app/eth0 (trunk 10-20) tagged; no other port carries it.
	do("highlight VLAN 11", chromedp.SetValue(css("#vlan-pick"), "11"))
	evalJS[bool](b, "change", `document.querySelector('#vlan-pick').dispatchEvent(new Event('change'))`)
	hl := evalJS[struct{ U, T []string }](b, "carriers of 11", `({U: vswitch.cy.nodes('.carries-u').map(n => n.id()), T: vswitch.cy.nodes('.carries-t').map(n => n.id())})`)
	if fmt.Sprint(hl.U) != "[ad:web/eth0]" || fmt.Sprint(hl.T) != "[ad:app/eth0]" {
		t.Fatalf("VLAN 11 highlights untagged %v, tagged %v; want [ad:web/eth0] and [ad:app/eth0]", hl.U, hl.T)
	}
	screenshot("cli-change-live-vlan-11")
	do("highlight nothing", chromedp.SetValue(css("#vlan-pick"), ""))
	evalJS[bool](b, "change", `document.querySelector('#vlan-pick').dispatchEvent(new Event('change'))`)

	// 7. Export SVG.
	svgText := evalJS[string](b, "export SVG", `vswitch.exportSVG()`)
	if !strings.Contains(svgText, "<svg") || !strings.Contains(svgText, "lan0") || !strings.Contains(svgText, "test0") {
		t.Fatalf("the exported SVG is not the picture:\n%.300s", svgText)
	}
	os.WriteFile(filepath.Join(artifacts, "topology.svg"), []byte(svgText), 0o644)
	// PNG and JSON: the picture as an image, the topology as the API has it.
	if png := evalJS[string](b, "export PNG", `vswitch.cy.png({full: true, bg: '#ffffff'})`); !strings.HasPrefix(png, "data:image/png;base64,") || len(png) < 2000 {
		t.Fatalf("the PNG export is not an image: %.80s", png)
	}
	if n := evalJS[int](b, "export JSON", `JSON.parse(vswitch.exportJSON()).switches.length`); n != 3 {
		t.Fatalf("the JSON export has %d switches, want 3", n)
	}

	// A VM with many adapters is one node for them until it is selected.
	p.must("vm", "add", "big")
	for i := range 7 {
		p.must("adapter", "add", fmt.Sprintf("big/eth%d", i), "--switch", "dmz0", "--qemu-stream", "--socket-path", filepath.Join(p.dir, fmt.Sprintf("big%d.sock", i)))
	}
	waitJS("big's adapters folded", `vswitch.cy.getElementById('vmgrp:big').nonempty() && vswitch.cy.getElementById('ad:big/eth0').empty()`)
	evalJS[bool](b, "select big's adapters", `vswitch.cy.getElementById('vmgrp:big').emit('tap'); true`)
	waitJS("big's adapters drawn", `vswitch.cy.getElementById('ad:big/eth6').nonempty() && vswitch.cy.getElementById('vmgrp:big').empty()`)
	screenshot("vm-adapters-expanded")

	// A VM that vswitchd runs: started and stopped from its details, its
	// console's tail shown as it boots, its state in the picture.
	lab := guestlab.Build(t)
	p.must("vm", "add", "q", "--kernel", lab.Kernel, "--initrd", lab.Initrd, "--memory", "192", "--append",
		guestlab.Cmdline(guestlab.Guest{Cmd: "echo CONSOLE-HELLO-FROM-Q; sleep 120"}))
	waitJS("VM q drawn", `vswitch.cy.getElementById('vm:q').nonempty()`)
	evalJS[bool](b, "select q", `vswitch.cy.getElementById('vm:q').emit('tap'); true`)
	waitJS("q's Start", `[...document.querySelectorAll('#details button')].some(b => b.textContent === 'Start')`)
	evalJS[bool](b, "start q", `[...document.querySelectorAll('#details button')].find(b => b.textContent === 'Start').click(); true`)
	waitJS("q running in the picture", `vswitch.cy.getElementById('vm:q').data('label').includes('running')`)
	b.waitFor("q's console in its details", `(document.getElementById('console') || {}).textContent?.includes('CONSOLE-HELLO-FROM-Q')`, 60*time.Second)
	screenshot("vm-running-console")
	evalJS[bool](b, "stop q", `[...document.querySelectorAll('#details button')].find(b => b.textContent === 'Stop').click(); true`)
	b.waitFor("q stopped in the picture", `vswitch.cy.getElementById('vm:q').hasClass('down')`, 30*time.Second)
	p.must("vm", "rm", "q", "--force")

	// 8. Accessibility basics: every form field has a label; the picture
	// is reached and used with the keyboard.
	unlabelled := evalJS[[]string](b, "labels", `[...document.querySelectorAll('input, select, textarea')].filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.name || e.id)`)
	if len(unlabelled) > 0 {
		t.Fatalf("form fields without a label: %v", unlabelled)
	}
	evalJS[bool](b, "focus the picture", `vswitch.cy.elements().unselect(); vswitch.selected = null; document.querySelector('#graph').focus(); true`)
	do("arrow down", chromedp.KeyEvent(kb.ArrowDown))
	waitJS("a node selected by keyboard", `vswitch.selected !== null && document.querySelector('#details h2') !== null`)
	sel := evalJS[string](b, "selected", `vswitch.selected`)
	do("keyboard on", chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowRight))
	sel2 := evalJS[string](b, "selected after moving", `vswitch.selected`)
	if sel2 == sel || sel2 == "" {
		t.Fatalf("the arrow keys did not move the selection (%q, then %q)", sel, sel2)
	}
	screenshot("keyboard-selection")

	mu.Lock()
	collecting = false
	if len(consoleErrors) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(consoleErrors, "\n"))
	}
	mu.Unlock()

	// 9. A rotated token logs the browser out.
	p.must("console", "--rotate")
	status, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`fetch('/v1/topology').then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if status != 401 {
		t.Fatalf("after vswitchctl console --rotate the old session got %d, want 401", status)
	}
}

func adapters(t *testing.T, p *product) []config.Adapter {
	t.Helper()
	var out []config.Adapter
	if err := json.Unmarshal([]byte(p.must("adapter", "ls", "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// revision is the state's revision as vswitchctl host show prints it.
func revision(t *testing.T, p *product) string {
	t.Helper()
	for _, l := range strings.Split(p.must("host", "show"), "\n") {
		if r, ok := strings.CutPrefix(l, "revision: "); ok {
			return r
		}
	}
	t.Fatal("vswitchctl host show prints no revision")
	return ""
}

// browser runs the steps of a browser test, with a screenshot (numbered
// by step) for each state worth keeping and one of the failure.
type browser struct {
	t         testing.TB
	ctx       context.Context
	artifacts string
	log       *logBuffer
	step      int
}

// newBrowser starts Debian's Chromium (headless, a profile of its own,
// none of its background connections), or skips without it.
func newBrowser(t testing.TB, artifacts string, log *logBuffer) *browser {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("Debian's chromium is not installed (make lab installs it)")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(cancelTimeout)
	b := &browser{t: t, ctx: ctx, artifacts: artifacts, log: log}
	b.do("start Chromium", chromedp.Navigate("about:blank")) // before any listener: both would start one
	return b
}

// artifactDir is where a browser test's screenshots go: $VSWITCH_ARTIFACTS
// (default: under the system's temp dir), then name.
func artifactDir(name string) string {
	dir := os.Getenv("VSWITCH_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "vswitch-artifacts")
	}
	return filepath.Join(dir, name)
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	if shot, serr := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); serr == nil {
		os.WriteFile(filepath.Join(b.artifacts, "failed.png"), shot, 0o644)
	}
	b.t.Fatalf("%s: %v\ndaemon log:\n%s", what, err, b.log)
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.fail(what, err)
	}
}

func (b *browser) wait(what, js string) {
	b.t.Helper()
	b.waitFor(what, js, 20*time.Second)
}

// waitFor is wait with a timeout of its own.
func (b *browser) waitFor(what, js string, timeout time.Duration) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(timeout))); err != nil {
		b.fail(what, err)
	}
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	b.step++
	if err := os.WriteFile(filepath.Join(b.artifacts, fmt.Sprintf("%02d-%s.png", b.step, name)), shot, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// evalJS evaluates js in the page and decodes its value.
func evalJS[T any](b *browser, what, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// clusterConsole opens h1's web console on a cluster of h1 and h2 with the
// spanning switch sec0 and VMs x (on h1) and y (on h2): every host is a
// box holding its VMs and their adapters, the spanning switch is outside
// them, and a change written through h2 reaches h1's picture. Without
// Chromium it says so and checks nothing.
func clusterConsole(t *testing.T, h1, h2 *product) {
	t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Log("Debian's chromium is not installed (make lab installs it): the cluster's console is not checked")
		return
	}
	inner, login := consoleURL(t, h1)
	b := newBrowser(t, artifactDir("console-cluster"), h1.log)
	b.do("log in", chromedp.Navigate("http://"+forward(t, h1.daemonNS, inner)+login))
	b.wait("the cluster drawn", `window.vswitch && vswitch.cy.getElementById('ad:y/eth0').nonempty()`)
	got := evalJS[map[string]string](b, "parents", `Object.fromEntries(['sw:sec0', 'ad:x/eth0', 'vm:x', 'ad:y/eth0', 'vm:y'].map(id => [id, vswitch.cy.getElementById(id).data('parent') || 'none']))`)
	want := map[string]string{"sw:sec0": "none", "ad:x/eth0": "host:t1", "vm:x": "host:t1", "ad:y/eth0": "host:t2", "vm:y": "host:t2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("where the cluster's nodes are drawn: %v, want %v", got, want)
	}
	// y/eth0's counters live on h2: h1's console reads them from there.
	evalJS[bool](b, "select y/eth0", `vswitch.cy.getElementById('ad:y/eth0').emit('tap'); true`)
	b.wait("h2's counters of y/eth0 in h1's console", `[...document.querySelectorAll('#stats tr')].some(tr => tr.cells[0].textContent === 'y/eth0' && Number(tr.cells[1].textContent.replace(/,/g, '')) > 0)`)
	b.screenshot("cluster")
	h2.must("adapter", "vlan", "y/eth0", "--access", "7")
	b.wait("h2's write in h1's picture", `vswitch.cy.getElementById('ad:y/eth0').data('label').includes('access 7')`)
	b.screenshot("write-through-another-host")
}
