package hostpcsc

import (
	"fmt"
	"log/slog"

	"github.com/cardshare/cardshare/internal/nativepcsc"
	"github.com/cardshare/cardshare/internal/scard"
)

var _ Source = (*nativepcsc.Source)(nil)

// newNative loads the system's PC/SC library (scard.Open: libpcsclite
// through purego, winscard.dll, PCSC.framework) and serves pcsc-lite's
// protocol from it in-process. A library that does not load is an
// *scard.LoadError, whose Hint says what to install.
func newNative(log *slog.Logger) (*nativepcsc.Source, error) {
	lib, err := scard.Open()
	if err != nil {
		return nil, fmt.Errorf("native PC/SC: %w", err)
	}
	return nativepcsc.New(lib, &nativepcsc.Config{Logger: log})
}

// NativeLibrary loads the native backend's library and names it, for
// `cardshare version`: "libpcsclite.so.1", "winscard.dll (Wine)", ...
func NativeLibrary() (string, error) {
	lib, err := scard.Open()
	if err != nil {
		return "", err
	}
	return lib.String(), nil
}
