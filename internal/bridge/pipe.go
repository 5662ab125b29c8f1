package bridge

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cardshare/cardshare/internal/neterr"
)

// A connection's copy starts with a small buffer and takes a large one only
// while messages do not fit. pcsc-lite messages are nearly all a few hundred
// bytes; the largest common one, the reader state array (DefaultSlots records
// of 184 bytes, 2944 bytes), fits smallBufSize. Only extended APDUs
// (MAX_BUFFER_SIZE_EXTENDED, 65548 bytes, plus the 8-byte header and the
// 32-byte transmit_struct) and the arrays of a pcscd built with more slots
// need more. A 64 KiB buffer for each direction of every open connection
// was most of the relay's memory under load.
const (
	smallBufSize = 4 << 10
	bigBufSize   = 64 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { return new([smallBufSize]byte) }}
	bigBufs   = sync.Pool{New: func() any { return new([bigBufSize]byte) }}
)

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
	var up, down *atomic.Uint64
	if counts != nil {
		up, down = &counts.Up, &counts.Down
	}
	return pipe(ctx, guest, host,
		func() error { return copyBytes(host, guest, up) },
		func() error { return copyBytes(guest, host, down) })
}

// pipe is Pipe with the two directions given: up moves the guest's bytes
// to the host and down the host's to the guest, each until its source
// ends (nil) or fails. The byte relay copies; the protocol-aware stage
// (proxy.go) parses. Either way the ending of a connection is handled
// here, in one place.
func pipe(ctx context.Context, guest, host net.Conn, up, down func() error) error {
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

	errc := make(chan error, 1)
	go func() { errc <- half(host, up, closeBoth) }()
	err := half(guest, down, closeBoth)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// half runs one direction whose destination is dst. When its source ends
// it half-closes dst, or closes both connections when dst cannot
// half-close. When it fails it closes both.
func half(dst net.Conn, run func() error, closeBoth func()) error {
	if err := run(); err != nil {
		closeBoth()
		return quiet(err)
	}
	if cw, ok := dst.(closeWriter); ok {
		if cw.CloseWrite() == nil {
			return nil
		}
	}
	closeBoth()
	return nil
}

// copyBytes copies src to dst until src ends (nil) or either fails.
//
// It reads into a small buffer. A read that fills it means more bytes are
// waiting: the next reads go to a large buffer, until one does not fill
// that either, which hands the large buffer back. So an idle connection
// holds only small buffers whatever it carried before, and relaying small
// messages touches no pool.
func copyBytes(dst, src net.Conn, n *atomic.Uint64) error {
	small := smallBufs.Get().(*[smallBufSize]byte)
	defer smallBufs.Put(small)
	var big *[bigBufSize]byte
	defer func() {
		if big != nil {
			bigBufs.Put(big)
		}
	}()
	buf := small[:]
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if n != nil {
				n.Add(uint64(nw))
			}
			if werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		switch {
		case big == nil && nr == len(buf):
			big = bigBufs.Get().(*[bigBufSize]byte)
			buf = big[:]
		case big != nil && nr < len(buf):
			bigBufs.Put(big)
			big = nil
			buf = small[:]
		}
	}
}

// quiet hides the errors that closing a connection causes in the other
// direction's copy: they are how a relay ends, not failures.
// io.ErrClosedPipe is net.Pipe's net.ErrClosed (the native backend's
// connections on Windows).
func quiet(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) ||
		neterr.Reset(err) || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}
