// Package testenv runs the real parts cardshare works with, for end-to-end
// tests: Debian's pcscd with virtual readers and a virtual card, a C client
// built on the real libpcsclite, and OpenSSH's sshd.
//
// StartPCSCD starts a private pcscd on a socket of its own, with vsmartcard's
// vpcd driver providing two readers (VPCDReader, VPCDSecondReader);
// InsertCard puts a hello-world card (package vcard) into one. BuildClient
// compiles testdata/pcscclient.c and RunClient runs it against a socket, the
// way any PC/SC application would. Each instance is private to its test, so
// tests and packages may run in parallel.
//
// The harness needs Linux, root (for the namespaces pcscd runs in) and the
// packages that scripts/install-test-deps.sh installs. It fails the test,
// rather than skipping it, when something is missing.
//
// A minimal end-to-end test:
//
//	p := testenv.StartPCSCD(t)
//	p.InsertCard(t)
//	out, err := testenv.RunClient(t, testenv.BuildClient(t), p.Socket, "hello")
//	// out contains "response: Hello world!" and "sw: 9000"
package testenv
