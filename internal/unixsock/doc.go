// Package unixsock keeps cardshare's local files private: the guest socket
// that guest programs connect to (ListenGuestSocket, its default place
// GuestSocketFor, the sun_path limit MaxPath, the stale-socket probe
// ClearStale), directories only their owner may enter (MkdirPrivate), and
// files only their owner may read (CheckPrivateFile, WriteFileAtomic, Lock).
//
// Errors carry no package prefix: the mode that calls adds its own ("relay:
// ..."), and callers branch on ErrSocketInUse and ErrUnsafePermissions with
// errors.Is.
//
// It imports only the standard library and must not import any other
// cardshare package.
package unixsock
