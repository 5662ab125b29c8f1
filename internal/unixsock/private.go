package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrUnsafePermissions means a file or directory that holds keys is open to
// other users, or is not owned by this one.
var ErrUnsafePermissions = errors.New("unsafe permissions")

// MkdirPrivate creates dir with mode 0700 if it is missing, and tightens
// an existing one of this user to 0700 (as SSH mode does with the guest
// socket's directory). It refuses a directory of another user.
func MkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := checkOwner(dir, fi); err != nil {
		return err
	}
	if privateModes && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("%w: %s has mode %v: %w", ErrUnsafePermissions, dir, fi.Mode().Perm(), err)
		}
	}
	return nil
}

// ErrOpenDir means a directory that the user chose for a socket (--socket,
// --control-socket) lets other users enter it. MkdirPrivate would tighten
// it to 0700, which is right for cardshare's own directories but not for
// one of the user's, such as $HOME: the user must choose.
var ErrOpenDir = errors.New("directory may be entered by other users")

// CheckChosenDir checks the directory of a socket path that the user chose:
// a missing one is fine (MkdirPrivate creates it 0700), an existing one
// must belong to this user and let no one else in. It never changes a
// mode.
func CheckChosenDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := checkOwner(dir, fi); err != nil {
		return err
	}
	if privateModes && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %v", ErrOpenDir, dir, fi.Mode().Perm())
	}
	return nil
}

// CheckPrivateFile refuses a file that other users may read or write, or
// that belongs to another user.
func CheckPrivateFile(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	if privateModes && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %v; run `chmod 600 %s`", ErrUnsafePermissions, path, fi.Mode().Perm(), path)
	}
	return nil
}

// WriteFileAtomic writes b to a new file with mode 0600 in path's directory
// and renames it to path, so that readers see the old file or the new one,
// never a part.
func WriteFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil && !errors.Is(err, fs.ErrInvalid) {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
