package qemuargs

import (
	"errors"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
)

func TestArgs(t *testing.T) {
	mac := frame.MustParseMAC("02:56:53:00:00:07")
	tests := []struct {
		a    config.Adapter
		pxe  bool
		want string
	}{
		{config.Adapter{VM: "web", Name: "eth0", MAC: mac, Attachment: config.Attachment{Kind: config.AttachQEMUStream}}, false,
			"-netdev stream,id=vs-eth0,server=off,addr.type=unix,addr.path=/run/vswitch/web-eth0.sock -device virtio-net-pci,netdev=vs-eth0,mac=02:56:53:00:00:07,romfile="},
		{config.Adapter{VM: "web", Name: "eth1", MAC: mac, Type: config.Legacy, Attachment: config.Attachment{Kind: config.AttachTAP, Device: "vnet7"}}, true,
			"-netdev tap,id=vs-eth1,ifname=vnet7,script=no,downscript=no -device tulip,netdev=vs-eth1,mac=02:56:53:00:00:07"},
		{config.Adapter{VM: "web", Name: "n.2", MAC: mac, Attachment: config.Attachment{Kind: config.AttachQEMUDgram}}, false,
			"-netdev dgram,id=vs-n-2,local.type=unix,local.path=/run/vswitch/web-eth0.sock.qemu,remote.type=unix,remote.path=/run/vswitch/web-eth0.sock -device virtio-net-pci,netdev=vs-n-2,mac=02:56:53:00:00:07,romfile="},
	}
	for _, tt := range tests {
		args, err := Args(tt.a, "/run/vswitch/web-eth0.sock", tt.pxe)
		if err != nil || strings.Join(args, " ") != tt.want {
			t.Errorf("Args(%s) = %q, %v\nwant %q", tt.a.ID(), strings.Join(args, " "), err, tt.want)
		}
	}
	ns := config.Adapter{VM: "c", Name: "eth0", Attachment: config.Attachment{Kind: config.AttachNetns, Namespace: "c"}}
	if _, err := Args(ns, "", false); !errors.Is(err, ErrNotForQEMU) || !strings.Contains(err.Error(), `network namespace "c"`) {
		t.Errorf("netns adapter: %v", err)
	}
	x, err := Libvirt(tests[1].a)
	if err != nil || !strings.Contains(x, "<target dev='vnet7' managed='no'/>") || !strings.Contains(x, "<model type='tulip'/>") {
		t.Errorf("Libvirt = %q, %v", x, err)
	}
	if _, err := Libvirt(tests[0].a); !errors.Is(err, ErrNotForQEMU) {
		t.Errorf("Libvirt of a stream adapter: %v", err)
	}
}
