// Package vmrun runs VMs with QEMU for vswitchd: it builds the command line
// from a VM and its adapters (each wired with its device model, MAC and
// attachment), picks KVM when it really works and TCG otherwise, supervises
// the process (state, exit code) and keeps its serial console. QEMU writes
// its PID file and console into the runner's directory, so that after a
// vswitchd restart the VMs it ran are found and supervised again (Adopt).
package vmrun

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	dir    string
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
	status api.VMStatus
	signal func(syscall.Signal) error
	done   chan struct{}
}

// ConsoleTail is how much of a VM's console Console returns.
const ConsoleTail = 256 << 10

// New returns a runner with no VM running that keeps each VM's PID file
// (NAME.pid, written by QEMU) and serial console (NAME.console) in dir.
func New(log *slog.Logger, dir string) *Runner {
	if log == nil {
		log = slog.Default()
	}
	return &Runner{log: log, dir: dir, vms: map[string]*proc{}}
}

func (r *Runner) pidFile(name string) string     { return filepath.Join(r.dir, name+".pid") }
func (r *Runner) consoleFile(name string) string { return filepath.Join(r.dir, name+".console") }

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
	stopped := api.VMStatus{Name: vm.Name, State: "stopped"}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return stopped, fmt.Errorf("%w: %v", ErrCannotRun, err)
	}
	pid := r.pidFile(vm.Name)
	os.Remove(pid)
	// The console goes to a file, not a pipe: QEMU outlives a vswitchd
	// that is killed or restarted, and a later one reads the same file.
	con, err := os.OpenFile(r.consoleFile(vm.Name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return stopped, fmt.Errorf("%w: %v", ErrCannotRun, err)
	}
	defer con.Close()
	cmd := exec.Command(bin, append(args, "-pidfile", pid)...)
	cmd.Stdout, cmd.Stderr = con, con
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return stopped, fmt.Errorf("%w: %v", ErrCannotRun, err)
	}
	p := &proc{done: make(chan struct{}), signal: func(sig syscall.Signal) error { return cmd.Process.Signal(sig) },
		status: api.VMStatus{Name: vm.Name, State: "running", PID: cmd.Process.Pid, Accel: accel, Note: why}}
	r.vms[vm.Name] = p
	r.log.Info("VM started", "vm", vm.Name, "pid", p.status.PID, "accel", accel)
	go func() {
		err := cmd.Wait()
		code, note := cmd.ProcessState.ExitCode(), ""
		if err != nil && code < 0 {
			note = err.Error()
		}
		r.exited(vm.Name, p, code, note)
	}()
	return p.status, nil
}

// Adopt finds a VM that an earlier vswitchd started and that still runs
// (its QEMU's PID file, checked against the process's command line, so a
// reused PID is never taken for it) and supervises it as if started here.
// Its exit code will not be known: it is not this process's child. note
// is added to its status (e.g. what did not survive the restart).
func (r *Runner) Adopt(name, note string) (api.VMStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.vms[name]; p != nil && p.status.State == "running" {
		return p.status, true
	}
	b, err := os.ReadFile(r.pidFile(name))
	if err != nil {
		return api.VMStatus{}, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return api.VMStatus{}, false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return api.VMStatus{}, false
	}
	// Checked after the pidfd is open: the process it names cannot change.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("\x00-pidfile\x00"+r.pidFile(name)+"\x00")) {
		unix.Close(fd)
		return api.VMStatus{}, false
	}
	accel := "tcg"
	if bytes.Contains(cmdline, []byte("accel=kvm")) {
		accel = "kvm"
	}
	p := &proc{done: make(chan struct{}), signal: func(sig syscall.Signal) error { return unix.PidfdSendSignal(fd, sig, nil, 0) },
		status: api.VMStatus{Name: name, State: "running", PID: pid, Accel: accel,
			Note: strings.TrimSpace("adopted after a vswitchd restart (its exit code will not be known) " + note)}}
	r.vms[name] = p
	r.log.Info("VM adopted", "vm", name, "pid", pid)
	go func() {
		for {
			_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
			if err != unix.EINTR {
				break
			}
		}
		unix.Close(fd)
		r.exited(name, p, -1, "exited while adopted: exit code not known")
	}()
	return p.status, true
}

// exited records a VM's exit and tells OnExit.
func (r *Runner) exited(name string, p *proc, code int, note string) {
	r.mu.Lock()
	p.status.State, p.status.PID, p.status.ExitCode = "exited", 0, code
	if note != "" {
		p.status.Note = note
	}
	onExit := r.onExit
	r.mu.Unlock()
	os.Remove(r.pidFile(name)) // QEMU removes it on a clean exit only
	r.log.Info("VM exited", "vm", name, "code", code)
	if onExit != nil {
		onExit(name)
	}
	close(p.done)
}

// Stop asks QEMU to quit (SIGTERM) and kills it after timeout.
func (r *Runner) Stop(name string, timeout time.Duration) (api.VMStatus, error) {
	r.mu.Lock()
	p := r.vms[name]
	running := p != nil && p.status.State == "running"
	r.mu.Unlock()
	if !running {
		return r.Status(name), fmt.Errorf("%s: %w", name, ErrNotRunning)
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.signal(syscall.SIGKILL)
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

// Console returns the last ConsoleTail bytes of a VM's serial console, as
// the last QEMU that ran it here wrote it.
func (r *Runner) Console(name string) string {
	f, err := os.Open(r.consoleFile(name))
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > ConsoleTail {
		f.Seek(-ConsoleTail, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, ConsoleTail))
	return string(b)
}

// Leftovers returns the VMs whose QEMU, started by an earlier vswitchd,
// may still run (they have a PID file here).
func (r *Runner) Leftovers() []string {
	files, _ := filepath.Glob(filepath.Join(r.dir, "*.pid"))
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".pid"))
	}
	return out
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
