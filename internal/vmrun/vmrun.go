// Package vmrun runs VMs with QEMU for vswitchd: it builds the command line
// from a VM and its adapters (each wired with its device model, MAC and
// attachment), picks KVM when it really works and TCG otherwise, supervises
// the process (state, exit code) and keeps the tail of its serial console.
package vmrun

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/qemuargs"
)

// Errors.
var (
	ErrRunning    = errors.New("VM is already running")
	ErrNotRunning = errors.New("VM is not running")
	ErrCannotRun  = errors.New("VM cannot be run")
)

// Accel returns the accelerator to use and why: KVM when /dev/kvm exists
// and is an ordinary KVM; on a nested "PVM" KVM (/sys/module/kvm_pvm) it
// cannot run ordinary guests, so TCG.
func Accel() (accel, why string) {
	return accelWith(func(p string) bool { _, err := os.Stat(p); return err == nil })
}

// accelWith is Accel on a host where exists says which files are there.
func accelWith(exists func(path string) bool) (accel, why string) {
	if !exists("/dev/kvm") {
		return "tcg", "no /dev/kvm: TCG (software emulation)"
	}
	if exists("/sys/module/kvm_pvm") {
		return "tcg", "/dev/kvm is a nested PVM KVM that cannot run ordinary guests: TCG (software emulation)"
	}
	return "kvm", "KVM"
}

// Args returns QEMU's arguments for vm with its adapters.
func Args(vm config.VM, adapters []config.Adapter, accel string) ([]string, error) {
	mem, cpus := vm.Memory, vm.CPUs
	if mem == 0 {
		mem = 256
	}
	if cpus == 0 {
		cpus = 1
	}
	args := []string{"-name", vm.Name, "-machine", "q35,accel=" + accel, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nographic", "-nodefaults", "-serial", "stdio"}
	var pxe *config.Adapter
	for i := range adapters {
		if adapters[i].Name == vm.NetworkBoot && vm.NetworkBoot != "" {
			pxe = &adapters[i]
		}
	}
	switch {
	case pxe != nil && pxe.TypeOrDefault() == config.Legacy:
		// QEMU's tulip has no option ROM: boot iPXE as a kernel, which drives it.
		if vm.Kernel != "" {
			return nil, fmt.Errorf("%w: network boot from legacy adapter %s boots %s as the kernel; remove the VM's kernel", ErrCannotRun, pxe.Name, qemuargs.IPXELkrn)
		}
		if _, err := os.Stat(qemuargs.IPXELkrn); err != nil {
			return nil, fmt.Errorf("%w: network boot from a legacy adapter needs %s (apt-get install ipxe)", ErrCannotRun, qemuargs.IPXELkrn)
		}
		args = append(args, "-kernel", qemuargs.IPXELkrn)
	case pxe != nil:
		if !anyExists(qemuargs.VirtioROMs) {
			return nil, fmt.Errorf("%w: network boot from a synthetic adapter needs the virtio iPXE ROM (apt-get install ipxe-qemu)", ErrCannotRun)
		}
		args = append(args, "-boot", "order=n")
	case vm.Kernel != "":
		args = append(args, "-kernel", vm.Kernel)
		if vm.Initrd != "" {
			args = append(args, "-initrd", vm.Initrd)
		}
		if vm.Append != "" {
			args = append(args, "-append", vm.Append)
		}
	case vm.Disk == "":
		return nil, fmt.Errorf("%w: VM %s has no kernel, disk or network boot adapter", ErrCannotRun, vm.Name)
	}
	if vm.Disk != "" {
		args = append(args, "-drive", "file="+vm.Disk+",if=virtio")
	}
	for _, a := range adapters {
		na, err := qemuargs.Args(a, a.SocketPath(), pxe != nil && a.Name == pxe.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCannotRun, err)
		}
		args = append(args, na...)
	}
	return args, nil
}

func anyExists(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// Runner supervises the QEMU processes of VMs.
type Runner struct {
	QEMU   string // the binary; qemu-system-x86_64 if ""
	log    *slog.Logger
	mu     sync.Mutex
	vms    map[string]*proc
	onExit func(vm string)
}

// OnExit sets what is called, on the VM's supervising goroutine, when a VM exits.
func (r *Runner) OnExit(f func(vm string)) {
	r.mu.Lock()
	r.onExit = f
	r.mu.Unlock()
}

type proc struct {
	cmd     *exec.Cmd
	status  api.VMStatus
	console ring
	done    chan struct{}
}

// New returns a runner with no VM running.
func New(log *slog.Logger) *Runner {
	if log == nil {
		log = slog.Default()
	}
	return &Runner{log: log, vms: map[string]*proc{}}
}

// Start runs vm. Its adapters' ports must exist already (vswitchd listens
// on qemu-* sockets before QEMU starts: QEMU 7.2's stream client never
// reconnects).
func (r *Runner) Start(vm config.VM, adapters []config.Adapter) (api.VMStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.vms[vm.Name]; p != nil && p.status.State == "running" {
		return p.status, fmt.Errorf("%s: %w", vm.Name, ErrRunning)
	}
	accel, why := Accel()
	args, err := Args(vm, adapters, accel)
	if err != nil {
		return api.VMStatus{Name: vm.Name, State: "stopped"}, err
	}
	bin := r.QEMU
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	p := &proc{done: make(chan struct{})}
	p.console.max = 256 << 10
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.console, &p.console
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return api.VMStatus{Name: vm.Name, State: "stopped"}, fmt.Errorf("%w: %v", ErrCannotRun, err)
	}
	p.status = api.VMStatus{Name: vm.Name, State: "running", PID: p.cmd.Process.Pid, Accel: accel, Note: why}
	r.vms[vm.Name] = p
	r.log.Info("VM started", "vm", vm.Name, "pid", p.status.PID, "accel", accel)
	go r.wait(vm.Name, p)
	return p.status, nil
}

func (r *Runner) wait(name string, p *proc) {
	err := p.cmd.Wait()
	r.mu.Lock()
	p.status.State, p.status.PID = "exited", 0
	p.status.ExitCode = p.cmd.ProcessState.ExitCode()
	if err != nil && p.status.ExitCode < 0 {
		p.status.Note = err.Error()
	}
	onExit := r.onExit
	r.mu.Unlock()
	r.log.Info("VM exited", "vm", name, "code", p.status.ExitCode)
	if onExit != nil {
		onExit(name)
	}
	close(p.done)
}

// Stop asks QEMU to quit (SIGTERM) and kills it after timeout.
func (r *Runner) Stop(name string, timeout time.Duration) (api.VMStatus, error) {
	r.mu.Lock()
	p := r.vms[name]
	r.mu.Unlock()
	if p == nil || p.status.State != "running" {
		return r.Status(name), fmt.Errorf("%s: %w", name, ErrNotRunning)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
	}
	return r.Status(name), nil
}

// Wait waits until a running VM exits, up to timeout.
func (r *Runner) Wait(name string, timeout time.Duration) api.VMStatus {
	r.mu.Lock()
	p := r.vms[name]
	r.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
		case <-time.After(timeout):
		}
	}
	return r.Status(name)
}

// Status returns a VM's state ("stopped" if it never ran here).
func (r *Runner) Status(name string) api.VMStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.vms[name]; p != nil {
		return p.status
	}
	return api.VMStatus{Name: name, State: "stopped"}
}

// Console returns the tail of a VM's serial console.
func (r *Runner) Console(name string) string {
	r.mu.Lock()
	p := r.vms[name]
	r.mu.Unlock()
	if p == nil {
		return ""
	}
	return p.console.String()
}

// StopAll stops every running VM (for tests and shutdown by request).
func (r *Runner) StopAll(timeout time.Duration) {
	r.mu.Lock()
	var names []string
	for n, p := range r.vms {
		if p.status.State == "running" {
			names = append(names, n)
		}
	}
	r.mu.Unlock()
	for _, n := range names {
		r.Stop(n, timeout)
	}
}

// ring keeps the last max bytes written to it.
type ring struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b = append(r.b, p...)
	if len(r.b) > r.max {
		r.b = append(r.b[:0], r.b[len(r.b)-r.max:]...)
	}
	return len(p), nil
}

func (r *ring) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(r.b)
}
