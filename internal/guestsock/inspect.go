package guestsock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// State says what is at the guest socket path now.
type State string

const (
	Free  State = "free"   // nothing: expose will listen there
	Stale State = "stale"  // a socket nobody serves: expose removes it
	InUse State = "in use" // a listener, e.g. a running cardshare, answering or not
	Other State = "other"  // not a socket: expose refuses to replace it
)

// Found is what Inspect found.
type Found struct {
	// Socket is the guest socket path expose would use.
	Socket string
	// State is what is at Socket now.
	State State
	// OS is the guest's uname -s.
	OS string
	// Release is the guest's pcsc-lite release as its package manager
	// reports it, "" when none was found; Client is what it speaks.
	Release string
	Client  *pcsc.Client
}

// Inspect chooses and checks the guest socket path exactly as expose
// does before it forwards (creating the private directory when missing),
// and reads the guest's pcsc-lite release. A directory that other users
// can write to is an error wrapping ErrUnsafeDir. Nothing is removed.
func Inspect(ctx context.Context, c *ssh.Client, socket string, wait time.Duration) (Found, error) {
	info, err := Prepare(ctx, c, socket)
	g := Found{Socket: info.Socket, OS: info.OS, Release: info.Release, State: Free}
	if gc, ok := info.Client(); ok {
		g.Client = &gc
	}
	if err != nil {
		return g, err
	}
	switch info.Exists {
	case "other":
		g.State = Other
	case "socket":
		g.State = Stale
		conn, err := c.Dial("unix", info.Socket)
		if err != nil {
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || oe.Reason != ssh.ConnectionFailed {
				return g, fmt.Errorf("check whether %s is in use: %w", info.Socket, err)
			}
		} else {
			// A listener that accepts is in use even when it does not
			// answer: expose leaves it alone (ErrSilent).
			g.State = InUse
			conn.Close()
		}
	}
	return g, nil
}
