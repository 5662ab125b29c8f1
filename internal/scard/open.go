package scard

import (
	"errors"
	"fmt"
	"sync"
)

// ErrNoLibrary means the host's PC/SC library could not be loaded.
var ErrNoLibrary = errors.New("scard: PC/SC library not available")

// LoadError says which library failed to load and what to install.
type LoadError struct {
	Library string // "libpcsclite.so.1", "winscard.dll", …
	Hint    string // what the user can do: "install libpcsclite1 (Debian, Ubuntu) …"
	Err     error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("scard: load %s: %v", e.Library, e.Err)
}

// Unwrap makes errors.Is(err, ErrNoLibrary) true.
func (e *LoadError) Unwrap() []error { return []error{ErrNoLibrary, e.Err} }

var opened struct {
	once sync.Once
	lib  Library
	err  error
}

// Open loads the host's PC/SC library the first time it is called and
// returns it; later calls return the same Library or error. Nothing is
// loaded before, so a binary without the library starts and says so only
// when it needs it.
func Open() (Library, error) {
	opened.once.Do(func() { opened.lib, opened.err = open() })
	return opened.lib, opened.err
}
