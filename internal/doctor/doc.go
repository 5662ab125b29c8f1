// Package doctor holds the checks of `cardshare doctor`: which host
// backend serves the guests and why (with the native backend: that it
// answers and its readers), the host pcscd answers and its protocol version, its reader list, whether polkit may
// refuse cardshare, and with a guest: SSH login, Unix socket forwarding,
// the guest socket path, the guest's libpcsclite against the host pcscd,
// and the login user's environment. [Run] reports each [Result] (status,
// what was found, a fix) through a callback as soon as it is known; the
// caller prints them. On macOS and Windows the caller replaces the pcscd
// checks with its own (Config.Host: internal/hostcheck's).
//
// doctor must not import forward, relay, config or cmd.
package doctor
