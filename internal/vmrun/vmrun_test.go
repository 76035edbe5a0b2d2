package vmrun

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/guestlab"
)

func TestArgs(t *testing.T) {
	mac := frame.MustParseMAC("02:56:53:00:00:09")
	stream := config.Adapter{VM: "v", Name: "eth0", MAC: mac, Attachment: config.Attachment{Kind: config.AttachQEMUStream}}
	legacyTAP := config.Adapter{VM: "v", Name: "eth1", MAC: mac, Type: config.Legacy, Attachment: config.Attachment{Kind: config.AttachTAP, Device: "vt1"}}
	tests := []struct {
		name string
		vm   config.VM
		ads  []config.Adapter
		want []string // substrings of the joined command line
		err  string
	}{
		{"kernel", config.VM{Name: "v", Kernel: "/k", Initrd: "/i", Append: "console=ttyS0", Memory: 512, CPUs: 2}, []config.Adapter{stream},
			[]string{"-name v -machine q35,accel=tcg -m 512 -smp 2", "-kernel /k -initrd /i -append console=ttyS0",
				"-netdev stream,id=vs-eth0,server=off,addr.type=unix,addr.path=/run/vswitch/v+eth0.sock", "virtio-net-pci,netdev=vs-eth0,mac=02:56:53:00:00:09,romfile="}, ""},
		{"disk", config.VM{Name: "v", Disk: "/d.img"}, nil, []string{"-m 256 -smp 1", "-drive file=/d.img,if=virtio"}, ""},
		{"legacy network boot", config.VM{Name: "v", NetworkBoot: "eth1"}, []config.Adapter{legacyTAP},
			[]string{"-kernel /usr/lib/ipxe/ipxe.lkrn", "-device tulip,netdev=vs-eth1,mac=02:56:53:00:00:09"}, ""},
		{"synthetic network boot", config.VM{Name: "v", NetworkBoot: "eth0"}, []config.Adapter{stream},
			[]string{"-boot order=n", "virtio-net-pci,netdev=vs-eth0,mac=02:56:53:00:00:09 "}, ""},
		{"nothing to boot", config.VM{Name: "v"}, nil, nil, "no kernel, disk or network boot adapter"},
		{"namespace adapter", config.VM{Name: "v", Kernel: "/k"},
			[]config.Adapter{{VM: "v", Name: "eth0", Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "x"}}}, nil, "network namespace"},
	}
	for _, tt := range tests {
		args, err := Args(tt.vm, tt.ads, "tcg")
		if tt.err != "" {
			if !errors.Is(err, ErrCannotRun) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want ErrCannotRun naming %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "apt-get install") {
				t.Logf("%s: %v (iPXE packages not installed here)", tt.name, err)
				continue
			}
			t.Fatalf("%s: %v", tt.name, err)
		}
		line := strings.Join(args, " ") + " "
		for _, w := range tt.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q lacks %q", tt.name, line, w)
			}
		}
	}
}

// TestAccel covers every kind of machine, not the one it runs on: a
// nested PVM /dev/kvm, the kvm_pvm module with no /dev/kvm, plain KVM,
// neither.
func TestAccel(t *testing.T) {
	for _, tt := range []struct {
		kvm, pvm  bool
		accel, in string
	}{
		{true, true, "tcg", "PVM"},
		{false, true, "tcg", "no /dev/kvm"},
		{true, false, "kvm", "KVM"},
		{false, false, "tcg", "no /dev/kvm"},
	} {
		accel, why := accelWith(func(p string) bool {
			return p == "/dev/kvm" && tt.kvm || p == "/sys/module/kvm_pvm" && tt.pvm
		})
		if accel != tt.accel || !strings.Contains(why, tt.in) {
			t.Errorf("/dev/kvm %v, kvm_pvm %v: %s (%s), want %s saying %q", tt.kvm, tt.pvm, accel, why, tt.accel, tt.in)
		}
	}
	accel, why := Accel()
	t.Logf("accelerator here: %s (%s)", accel, why)
}

// A VM with the lab kernel runs, prints on its console and exits 0; a
// second one is stopped while it sleeps.
func TestRunAndStop(t *testing.T) {
	lab := guestlab.Build(t)
	r := New(nil, t.TempDir())
	t.Cleanup(func() { r.StopAll(5 * time.Second) })
	cmd := func(c string) string {
		return "console=ttyS0 quiet panic=-1 vs.cmd=" + base64.StdEncoding.EncodeToString([]byte(c))
	}
	vm := config.VM{Name: "quick", Kernel: lab.Kernel, Initrd: lab.Initrd, Append: cmd("echo hello from the runner")}
	st, err := r.Start(vm, nil)
	if err != nil || st.State != "running" || st.PID == 0 {
		t.Fatalf("Start = %+v, %v", st, err)
	}
	if _, err := r.Start(vm, nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Start: %v", err)
	}
	st = r.Wait("quick", 2*time.Minute)
	if st.State != "exited" || st.ExitCode != 0 || !strings.Contains(r.Console("quick"), "hello from the runner") {
		t.Fatalf("after the guest powered off: %+v\n%s", st, r.Console("quick"))
	}
	slow := config.VM{Name: "slow", Kernel: lab.Kernel, Initrd: lab.Initrd, Append: cmd("sleep 600")}
	if _, err := r.Start(slow, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := r.Stop("slow", 5*time.Second); err != nil || st.State != "exited" {
		t.Fatalf("Stop = %+v, %v", st, err)
	}
	if _, err := r.Stop("slow", time.Second); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Stop of a stopped VM: %v", err)
	}
}

// fakeQEMU is a stand-in for QEMU: it writes its PID file, prints on its
// console and runs until it is signalled.
const fakeQEMU = `#!/bin/bash
while [ $# -gt 0 ]; do [ "$1" = -pidfile ] && pf=$2; shift; done
echo $$ > "$pf"
trap 'echo "fake qemu stopped"; exit 0' TERM
echo "fake qemu up"
while :; do sleep 0.05; done
`

// A VM that an earlier runner (an earlier vswitchd) started is found by
// a new runner, supervised (status, console, stop, exit) as its own; a
// PID file that names another process is not taken for the VM.
func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu")
	if err := os.WriteFile(bin, []byte(fakeQEMU), 0o755); err != nil {
		t.Fatal(err)
	}
	first := New(slog.New(slog.DiscardHandler), dir)
	first.QEMU = bin
	st, err := first.Start(config.VM{Name: "v", Kernel: "/vmlinux"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(st.PID, syscall.SIGKILL) }) // by PID: the one this test started
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(first.Console("v"), "fake qemu up"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the fake QEMU did not come up: %q", first.Console("v"))
		}
	}

	second := New(slog.New(slog.DiscardHandler), dir)
	exits := make(chan string, 1)
	second.OnExit(func(vm string) { exits <- vm })
	if got := second.Leftovers(); len(got) != 1 || got[0] != "v" {
		t.Fatalf("Leftovers = %v", got)
	}
	got, ok := second.Adopt("v", "")
	if !ok || got.State != "running" || got.PID != st.PID || !strings.Contains(got.Note, "adopted") {
		t.Fatalf("Adopt = %+v, %v; want running with PID %d", got, ok, st.PID)
	}
	if s := second.Status("v"); s.PID != st.PID {
		t.Fatalf("Status after Adopt = %+v", s)
	}
	if !strings.Contains(second.Console("v"), "fake qemu up") {
		t.Fatalf("Console after Adopt = %q", second.Console("v"))
	}
	if _, ok := second.Adopt("w", ""); ok {
		t.Fatal("adopted a VM that never ran")
	}
	if err := os.WriteFile(filepath.Join(dir, "x.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := second.Adopt("x", ""); ok {
		t.Fatal("adopted a process whose command line is not that VM's QEMU")
	}
	if s, err := second.Stop("v", 5*time.Second); err != nil || s.State != "exited" {
		t.Fatalf("Stop of the adopted VM = %+v, %v", s, err)
	}
	select {
	case vm := <-exits:
		if vm != "v" {
			t.Fatalf("OnExit(%q)", vm)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnExit not called for the adopted VM")
	}
	if !strings.Contains(second.Console("v"), "fake qemu stopped") {
		t.Fatalf("the adopted VM was not asked to quit: %q", second.Console("v"))
	}
	if _, err := os.Stat(filepath.Join(dir, "v.pid")); !os.IsNotExist(err) {
		t.Fatalf("PID file left: %v", err)
	}
}
