// Package rawio makes a socket's reads and writes cheap for a relay of small
// request-reply messages: RawIO does them as raw system calls inside the
// runtime poller, and keeps a Unix stream socket from waking the process
// each time its peer reads (Linux; elsewhere it returns the connection
// unchanged).
//
// It is a leaf: it imports only the standard library, so that the core
// (internal/bridge), the host side (internal/hostpcsc) and every transport
// can use it. It must not import any other cardshare package.
package rawio
