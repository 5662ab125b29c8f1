//go:build !unix

package unixsock

import "io/fs"

// checkOwner is a no-op where files have no Unix owner.
func checkOwner(string, fs.FileInfo) error { return nil }

// Lock does not lock where flock is missing: concurrent `relay pair` and
// `relay revoke` commands may then lose each other's change.
func Lock(string) (func(), error) { return func() {}, nil }

// privateModes says that file modes do not keep other users out here, so
// they are not checked.
const privateModes = false
