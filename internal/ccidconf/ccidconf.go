package ccidconf

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/cardshare/cardshare/internal/ccid"
)

// ErrNoSmartcard: the domain has no passthrough smartcard device. Its
// message shows the XML to add.
var ErrNoSmartcard = errors.New("ccidconf: the domain has no <smartcard mode='passthrough'> device; add one with `virsh edit DOMAIN`:\n" + exampleXML)

const exampleXML = `    <smartcard mode='passthrough' type='unix'>
      <source mode='bind' path='/run/cardshare/DOMAIN-ccid0.sock'/>
    </smartcard>`

// domain is the part of libvirt's domain XML (`virsh dumpxml`) that holds
// smartcards (https://libvirt.org/formatdomain.html#smart-card-devices).
type domain struct {
	Devices struct {
		Smartcards []struct {
			Mode   string `xml:"mode,attr"`
			Type   string `xml:"type,attr"`
			Source []struct {
				Mode    string `xml:"mode,attr"`
				Path    string `xml:"path,attr"`
				Host    string `xml:"host,attr"`
				Service string `xml:"service,attr"`
			} `xml:"source"`
		} `xml:"smartcard"`
	} `xml:"devices"`
}

// ChardevsFromDomainXML returns the chardevs of a libvirt domain's
// passthrough smartcards, in their order in the XML (each needs its own
// usb-ccid device, <controller type='ccid'>, as each has one slot). A
// source in mode 'bind' is a socket QEMU listens on, so the bridge dials it;
// 'connect' means QEMU dials, so the bridge listens. spicevmc smartcards
// belong to SPICE clients and are skipped.
func ChardevsFromDomainXML(b []byte) ([]ccid.Endpoint, error) {
	var d domain
	if err := xml.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("ccidconf: domain XML: %w", err)
	}
	var eps []ccid.Endpoint
	for i, sc := range d.Devices.Smartcards {
		if sc.Mode != "passthrough" || (sc.Type != "unix" && sc.Type != "tcp") {
			continue
		}
		if len(sc.Source) == 0 {
			return nil, fmt.Errorf("ccidconf: smartcard %d has no <source>", i)
		}
		src := sc.Source[0]
		ep := ccid.Endpoint{Network: sc.Type, Address: src.Path, Listen: src.Mode == "connect"}
		if sc.Type == "tcp" {
			ep.Address = net.JoinHostPort(src.Host, src.Service)
		}
		if ep.Address == "" || ep.Address == ":" {
			return nil, fmt.Errorf("ccidconf: smartcard %d has no socket address", i)
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, ErrNoSmartcard
	}
	return eps, nil
}

// SnippetOptions describe the guest side to print.
type SnippetOptions struct {
	// Domain names the VM, for socket paths and comments.
	Domain string
	// Readers is the number of emulated readers (usb-ccid devices); zero
	// means one.
	Readers int
	// Listen: cardshare listens and QEMU connects (cardshare qemu attach
	// --listen); otherwise QEMU listens.
	Listen bool
	// SocketDir holds the sockets; empty means /run/cardshare.
	SocketDir string
}

// Snippet writes the libvirt XML, the plain QEMU arguments and a Proxmox
// VE args: line that give a guest o.Readers emulated readers, each a
// usb-ccid device on an xHCI controller with a ccid-card-passthru card.
// qemu-xhci, not usb-ehci alone: EHCI refuses the full-speed reader.
func Snippet(w io.Writer, o SnippetOptions) {
	n := max(o.Readers, 1)
	dir := o.SocketDir
	if dir == "" {
		dir = "/run/cardshare"
	}
	name := o.Domain
	if name == "" {
		name = "vm"
	}
	sock := func(i int) string { return fmt.Sprintf("%s/%s-ccid%d.sock", dir, name, i) }
	srcMode, server := "bind", "server=on,wait=off"
	if o.Listen {
		srcMode, server = "connect", "reconnect=2"
	}
	fmt.Fprintf(w, "# libvirt (virsh edit %s), inside <devices>:\n", name)
	for i := range n {
		fmt.Fprintf(w, "    <smartcard mode='passthrough' type='unix'>\n      <source mode='%s' path='%s'/>\n    </smartcard>\n", srcMode, sock(i))
	}
	var args []string
	args = append(args, "-device qemu-xhci,id=ccidxhci")
	for i := range n {
		args = append(args,
			fmt.Sprintf("-chardev socket,id=ccid%d,path=%s,%s", i, sock(i), server),
			fmt.Sprintf("-device usb-ccid,id=ccidrdr%d,bus=ccidxhci.0", i),
			fmt.Sprintf("-device ccid-card-passthru,chardev=ccid%d,bus=ccidrdr%d.0", i, i))
	}
	fmt.Fprintf(w, "\n# plain QEMU:\n%s\n", strings.Join(args, " \\\n  "))
	fmt.Fprintf(w, "\n# Proxmox VE (/etc/pve/qemu-server/VMID.conf):\nargs: %s\n", strings.Join(args, " "))
	fmt.Fprintf(w, "\n# then, on the host:\ncardshare qemu attach")
	if o.Listen {
		fmt.Fprint(w, " --listen")
	}
	for i := range n {
		fmt.Fprintf(w, " --chardev unix:%s", sock(i))
	}
	fmt.Fprintln(w, " --reader 'PATTERN*'")
}
