package sshpaths

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// dialPipe opens the client end of a named pipe. CreateFile with
// OPEN_EXISTING is how a pipe client connects (Microsoft Learn, "Named
// Pipe Client"); FILE_FLAG_OVERLAPPED makes the handle asynchronous so
// that os.NewFile puts it on the runtime's poller. SECURITY_SQOS_PRESENT |
// SECURITY_IDENTIFICATION lets the agent learn who connects (the OpenSSH
// agent serves the keys of the connecting user) but not act as us. When
// every instance of the pipe is busy, CreateFile fails with
// ERROR_PIPE_BUSY: try again until ctx ends.
func dialPipe(ctx context.Context, name string) (net.Conn, error) {
	p, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	for {
		h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING,
			windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
		if err == nil {
			return newFileConn(os.NewFile(uintptr(h), name), name), nil
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// listPipes lists \\.\pipe\ with FindFirstFile, as PuTTY does to find
// Pageant (windows/agent-client.c, named_pipe_agent_exists).
func listPipes() []string {
	p, err := windows.UTF16PtrFromString(`\\.\pipe\*`)
	if err != nil {
		return nil
	}
	var d windows.Win32finddata
	h, err := windows.FindFirstFile(p, &d)
	if err != nil {
		return nil
	}
	defer windows.FindClose(h)
	var names []string
	for {
		names = append(names, windows.UTF16ToString(d.FileName[:]))
		if len(names) >= 4096 || windows.FindNextFile(h, &d) != nil {
			return names
		}
	}
}
