// Package qemuargs turns an adapter's settings into what QEMU or libvirt
// needs to wire a guest NIC to vswitch: the -netdev and -device arguments
// (virtio-net-pci for a synthetic adapter, tulip for a legacy one) and, for
// TAP attachments, a libvirt <interface> element. It is pure, shared by the
// CLI and the VM runner.
package qemuargs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vswitch/vswitch/internal/config"
)

// Files that network boot needs (Debian's ipxe and ipxe-qemu): QEMU's tulip
// has no option ROM, so a legacy adapter boots iPXE as a kernel, which
// drives it; a synthetic adapter boots its virtio iPXE ROM.
var (
	IPXELkrn   = "/usr/lib/ipxe/ipxe.lkrn"
	VirtioROMs = []string{"/usr/share/qemu/efi-virtio.rom", "/usr/lib/ipxe/qemu/efi-virtio.rom"}
)

// ErrNotForQEMU: the adapter is attached in a way QEMU cannot use (a namespace).
var ErrNotForQEMU = errors.New("adapter is not attached for QEMU")

// Device returns the QEMU device model of an adapter type.
func Device(t config.AdapterType) string {
	if t == config.Legacy {
		return "tulip" // QEMU's DEC 21143, which Linux's tulip driver binds
	}
	return "virtio-net-pci"
}

// Args returns QEMU's arguments for adapter a whose socket (for qemu-*
// attachments) is socket; the NIC's option ROM is off unless pxe.
func Args(a config.Adapter, socket string, pxe bool) ([]string, error) {
	id := "vs-" + strings.NewReplacer("/", "-", ".", "-").Replace(a.Name)
	var netdev string
	switch a.Attachment.Kind {
	case config.AttachQEMUStream:
		netdev = fmt.Sprintf("stream,id=%s,server=off,addr.type=unix,addr.path=%s", id, socket)
	case config.AttachQEMUDgram:
		netdev = fmt.Sprintf("dgram,id=%s,local.type=unix,local.path=%s.qemu,remote.type=unix,remote.path=%s", id, socket, socket)
	case config.AttachTAP:
		netdev = fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", id, a.Attachment.Device)
	default:
		return nil, fmt.Errorf("%w: %s is attached to network namespace %q; give it a tap, qemu-stream or qemu-dgram attachment",
			ErrNotForQEMU, a.ID(), a.Attachment.Namespace)
	}
	dev := fmt.Sprintf("%s,netdev=%s,mac=%s", Device(a.TypeOrDefault()), id, a.MAC)
	if !pxe {
		dev += ",romfile="
	}
	return []string{"-netdev", netdev, "-device", dev}, nil
}

// Libvirt returns an <interface> element for a TAP attachment.
func Libvirt(a config.Adapter) (string, error) {
	if a.Attachment.Kind != config.AttachTAP {
		return "", fmt.Errorf("%w: libvirt has no element for a %s attachment; use a tap attachment", ErrNotForQEMU, a.Attachment.Kind)
	}
	model := "virtio"
	if a.TypeOrDefault() == config.Legacy {
		model = "tulip"
	}
	return fmt.Sprintf("<interface type='ethernet'>\n  <mac address='%s'/>\n  <target dev='%s' managed='no'/>\n  <model type='%s'/>\n</interface>\n",
		a.MAC, a.Attachment.Device, model), nil
}
