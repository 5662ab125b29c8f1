// Package ccidconf describes the QEMU side of the CCID bridge
// (internal/ccid): it reads the chardevs of a libvirt domain's passthrough
// smartcards from its XML (ChardevsFromDomainXML), and prints the libvirt
// XML, QEMU arguments and Proxmox VE args: line that add emulated readers
// to a guest (Snippet). DomainChardevs runs `virsh dumpxml` through a
// Runner the caller gives.
//
// ccidconf must not import cmd/, forward, relay or config.
package ccidconf
