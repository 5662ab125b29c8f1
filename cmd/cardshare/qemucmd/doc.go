// Package qemucmd is `cardshare qemu`: attach (the host's readers to a QEMU
// guest as emulated USB CCID readers, internal/ccid) and snippet (the
// libvirt XML and QEMU arguments that give a guest such readers,
// internal/ccidconf). It parses flags and prints; the bridge is internal/ccid.
//
// It must not import forward or relay.
package qemucmd
