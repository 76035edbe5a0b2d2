package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/netnstest"
)

// BenchmarkConsole measures the web console in Chromium on a network of
// 1,000 adapters on 20 switches (500 VMs with two adapters each, QEMU
// stream sockets): the first render after login (switches of more than
// 24 adapters drawn as one group each), the render of every adapter
// (Expand all), and the push latency from the start of a vswitchctl
// change to the picture drawn with it (each iteration is one change; the
// write alone is cli-write-ms). bench/console runs it.
func BenchmarkConsole(b *testing.B) {
	netnstest.RequireRoot(b)
	p := webProduct(b)
	const switches, vms = 20, 500
	c := client.New(p.sock())
	start := time.Now()
	for i := range switches {
		if _, err := c.AddSwitch(config.Switch{Name: fmt.Sprintf("sw%02d", i), Type: config.Private}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range vms {
		vm := fmt.Sprintf("vm%03d", i)
		if _, err := c.AddVM(config.VM{Name: vm}); err != nil {
			b.Fatal(err)
		}
		for j := range 2 {
			a := config.Adapter{VM: vm, Name: fmt.Sprintf("eth%d", j), Switch: fmt.Sprintf("sw%02d", (2*i+j)%switches), DynamicMAC: true,
				Attachment: config.Attachment{Kind: config.AttachQEMUStream, Socket: filepath.Join(p.dir, fmt.Sprintf("%s-%d.sock", vm, j))},
				VLAN:       config.VLAN{Mode: config.ModeAccess, Access: frame.VID(10 + i%40)}}
			if _, err := c.AddAdapter(a); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("1,000 adapters on %d switches made in %v", switches, time.Since(start).Round(time.Millisecond))

	inner, login := consoleURL(b, p)
	base := "http://" + forward(b, p.daemonNS, inner)
	br := newBrowser(b, artifactDir("console-bench"), p.log)
	br.do("log in", chromedp.Navigate(base+login))
	br.wait("first render", `window.vswitch && vswitch.renders >= 1`)
	first := evalJS[float64](br, "first render", `vswitch.firstRenderAt`)
	nodes := evalJS[int](br, "nodes", `vswitch.cy.nodes().length`)
	br.screenshot("1000-adapters-grouped")
	evalJS[bool](br, "expand all", `document.querySelector('#expand').click(); true`)
	br.wait("expanded", `vswitch.cy.nodes().length > 1000`)
	expanded := evalJS[float64](br, "expanded render", `vswitch.lastRenderMs`)
	all := evalJS[int](br, "nodes", `vswitch.cy.nodes().length`)
	br.screenshot("1000-adapters-expanded")

	b.ResetTimer()
	var push, write time.Duration
	for i := range b.N {
		vid := 100 + i%3000
		t0 := time.Now()
		p.must("adapter", "vlan", "vm000/eth0", "--access", fmt.Sprint(vid))
		write += time.Since(t0)
		br.wait("the change in the picture", fmt.Sprintf(`vswitch.cy.getElementById('ad:vm000/eth0').data('label').includes('access %d\n')`, vid))
		// When the picture had it, by the browser's clock (the same as
		// ours): the poll that saw it comes later.
		drawn := evalJS[float64](br, "drawn at", `performance.timeOrigin + vswitch.lastPush.at + vswitch.lastPush.parseMs + vswitch.lastPush.renderMs`)
		push += time.Duration((drawn - float64(t0.UnixNano())/1e6) * float64(time.Millisecond))
	}
	b.StopTimer()
	b.ReportMetric(first, "first-render-ms")
	b.ReportMetric(float64(nodes), "first-nodes")
	b.ReportMetric(expanded, "expanded-render-ms")
	b.ReportMetric(float64(all), "expanded-nodes")
	b.ReportMetric(float64(push.Milliseconds())/float64(b.N), "push-ms")
	b.ReportMetric(float64(write.Milliseconds())/float64(b.N), "cli-write-ms")
	b.Logf("first render (grouped, %d nodes) %.0f ms after navigation; all %d nodes drawn in %.0f ms; a CLI change in the picture %v after vswitchctl started (mean of %d; the write itself, vswitchctl's run included, took %v)",
		nodes, first, all, expanded, (push / time.Duration(b.N)).Round(time.Millisecond), b.N, (write / time.Duration(b.N)).Round(time.Millisecond))
}
