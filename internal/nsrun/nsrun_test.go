package nsrun_test

import (
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/nsrun"
)

func TestPath(t *testing.T) {
	for spec, want := range map[string]string{
		"":                 "",
		"blue":             "/run/netns/blue",
		"4242":             "/proc/4242/ns/net",
		"/var/run/netns/x": "/var/run/netns/x",
		"./rel/ns":         "./rel/ns",
	} {
		if got := nsrun.Path(spec); got != want {
			t.Errorf("Path(%q) = %q, want %q", spec, got, want)
		}
	}
}

func TestInRunsInsideAndComesBack(t *testing.T) {
	ns := netnstest.New(t)
	want, err := netns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	host, _ := netns.Get()
	defer host.Close()
	var inside bool
	var ifs []net.Interface
	if err := nsrun.In(ns.Path, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Equal(want)
		ifs, err = net.Interfaces()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !inside || len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("fn ran inside: %v, saw interfaces %v (want only lo)", inside, ifs)
	}
	// This goroutine's thread never moved.
	if cur, _ := netns.Get(); !cur.Equal(host) {
		t.Fatal("the caller's thread changed namespace")
	}
	if err := nsrun.In("/nonexistent/ns", func() error { return nil }); err == nil {
		t.Fatal("In a missing namespace succeeded")
	}
	if err := nsrun.In("", func() error { return os.ErrExist }); err != os.ErrExist {
		t.Fatalf("In(\"\") did not return fn's error: %v", err)
	}
}
