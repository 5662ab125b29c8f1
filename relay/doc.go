// Package relay moves pcsc-lite connections between a guest and the host
// pcscd, whatever carries them.
//
// Every cardshare mode is a listener, a dial function and Pipe: the guest
// socket that an SSH server forwards, a yamux session or a plain Unix socket
// is a net.Listener; the host pcscd socket or a yamux stream is reached
// through a DialFunc. Serve joins the two, checks that each connection opens
// as a pcsc-lite client does, and pipes the rest unchanged.
package relay
