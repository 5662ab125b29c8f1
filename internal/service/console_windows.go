package service

import "golang.org/x/sys/windows"

var freeConsole = windows.NewLazySystemDLL("kernel32.dll").NewProc("FreeConsole")

// DetachConsole detaches the process from its console, which closes the
// console window Windows opened for the logon task (FreeConsole, Microsoft
// Learn "FreeConsole function"). Call it only when standard output and
// error go to a log file: they are invalid afterwards.
func DetachConsole() error {
	if err := freeConsole.Find(); err != nil {
		return err
	}
	if r, _, err := freeConsole.Call(); r == 0 {
		return err
	}
	return nil
}
