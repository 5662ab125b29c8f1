// Package connlimit caps the pcsc-lite connections that one guest, and the
// whole process, hold open on the host's pcscd, so that one guest cannot
// take every client slot pcscd has (PCSC_MAX_CONTEXT_THREADS, 200 by
// default: src/pcscd.h.in:56 in pcsc-lite 2.5.1; beyond it pcscd closes
// new connections at once, src/winscard_svc.c:193-289) and lock the host
// user and the other guests out. A connection over a cap is refused with
// the answer a pcscd that cannot serve gives (Refuse), not left hanging.
//
// It must not import cmd, forward, relay or config: the core that serves
// guest connections calls it, whatever the transport.
package connlimit
