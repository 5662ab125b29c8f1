package service

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	kernel32              = windows.NewLazySystemDLL("kernel32.dll")
	freeConsole           = kernel32.NewProc("FreeConsole")
	getConsoleProcessList = kernel32.NewProc("GetConsoleProcessList")
)

// DetachConsole detaches the process from its console when the console is
// its own, which closes the console window Windows opened for the logon
// task (FreeConsole, Microsoft Learn "FreeConsole function"). A console
// that other processes share (the shell that started `cardshare up`) is
// kept: detaching would leave the shell waiting and Ctrl-C unable to
// reach us. GetConsoleProcessList counts the processes attached
// (Microsoft Learn, "GetConsoleProcessList function"). Call it only when
// standard output and error go to a log file: they are invalid afterwards.
func DetachConsole() error {
	if err := freeConsole.Find(); err != nil {
		return err
	}
	if getConsoleProcessList.Find() == nil {
		var pids [2]uint32
		n, _, _ := getConsoleProcessList.Call(uintptr(unsafe.Pointer(&pids[0])), uintptr(len(pids)))
		if n != 1 {
			return nil // no console (0), or a shared one
		}
	}
	if r, _, err := freeConsole.Call(); r == 0 {
		return err
	}
	return nil
}
