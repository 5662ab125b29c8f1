// Package bridge is the core every cardshare mode shares: it serves guest
// connections. Each one must open as a pcsc-lite client does; its protocol
// version is checked against the host's, or translated when the two differ;
// then its bytes are piped to a connection from the host side (Pipe), or
// relayed message by message through the protocol-aware stage
// (internal/pcsc/proxy) when versions are translated, reader arrays differ
// in size, or a reader policy or an audit log applies. The byte relay
// frames what it copies (frame.go), so that each message leaves in one
// write: one SSH packet or one yamux frame.
//
// Every mode is a listener, a dial function and Serve: the guest socket an
// SSH server forwards, a yamux session or a plain Unix socket is the
// net.Listener; the host pcscd (a hostpcsc.Source's Dial) or a yamux stream
// is the DialFunc. A host side that is itself the daemon end, in this
// process (the native backend), is also a Local (Config.Local, local.go):
// a connection that the byte relay would serve is handed to it once its
// opening is checked, instead of being piped to a connection it serves.
//
// The protocol decisions live in internal/pcsc and internal/pcsc/proxy, the
// accept loop in internal/accept; LogCompat words the guest-against-host
// verdict that every mode logs. bridge must not import a transport
// (x/crypto/ssh, yamux, crypto/tls, vsock), nor cmd, forward, relay or
// config.
package bridge
