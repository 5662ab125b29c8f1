package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// bufSize holds the largest pcsc-lite message in one read: an extended APDU
// (MAX_BUFFER_SIZE_EXTENDED, 65548 bytes) plus the 8-byte header and the
// 32-byte transmit_struct.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// closeWriter is a connection that can close its sending half:
// *net.UnixConn, *net.TCPConn, and the channels of golang.org/x/crypto/ssh.
type closeWriter interface {
	CloseWrite() error
}

// Counts are the bytes a Pipe moved, by direction.
type Counts struct {
	Up   atomic.Uint64 // guest to host
	Down atomic.Uint64 // host to guest
}

// Pipe copies bytes between guest and host in both directions until both
// directions have ended, then closes both connections.
//
// When one side ends its stream (EOF), Pipe half-closes the other side's
// sending half, so a peer that still has a reply to send can send it. When
// either direction fails, or ctx is done, Pipe closes both connections at
// once so that nothing stays half-open: pcscd releases a client's contexts
// and card locks only when its socket closes. counts may be nil.
//
// Pipe returns nil when both directions ended with EOF or a close that Pipe
// itself caused, and the first real error otherwise.
func Pipe(ctx context.Context, guest, host net.Conn, counts *Counts) error {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			guest.Close()
			host.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	defer closeBoth()

	var up, down *atomic.Uint64
	if counts != nil {
		up, down = &counts.Up, &counts.Down
	}
	errc := make(chan error, 1)
	go func() { errc <- copyHalf(host, guest, up, closeBoth) }()
	err := copyHalf(guest, host, down, closeBoth)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// copyHalf copies src to dst. On EOF it half-closes dst, or closes both
// connections when dst cannot half-close. On an error it closes both.
func copyHalf(dst, src net.Conn, n *atomic.Uint64, closeBoth func()) error {
	buf := bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(buf)
	for {
		nr, rerr := src.Read(buf[:])
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if n != nil {
				n.Add(uint64(nw))
			}
			if werr != nil {
				closeBoth()
				return quiet(werr)
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(closeWriter); ok {
				if cw.CloseWrite() == nil {
					return nil
				}
			}
			closeBoth()
			return nil
		}
		if rerr != nil {
			closeBoth()
			return quiet(rerr)
		}
	}
}

// quiet hides the errors that closing a connection causes in the other
// direction's copy: they are how a relay ends, not failures.
func quiet(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}
