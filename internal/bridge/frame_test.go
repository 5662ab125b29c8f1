//go:build unix

package bridge

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
)

// writeCounter counts the writes made to a connection.
type writeCounter struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *writeCounter) take() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

// CloseWrite passes the half-close on, as Pipe looks for it.
func (c *writeCounter) CloseWrite() error { return c.Conn.(closeWriter).CloseWrite() }

// framedEnv runs framedPipe between a client and a daemon on Unix socket
// pairs, counting the relay's writes to each.
type framedEnv struct {
	client, daemon net.Conn
	toGuest        *writeCounter
	toHost         *writeCounter
	tr             *tracker
}

func startFramed(t *testing.T, f framed) *framedEnv {
	t.Helper()
	client, guestEnd := framedSocketPair(t)
	hostEnd, daemon := framedSocketPair(t)
	e := &framedEnv{client: client, daemon: daemon,
		toGuest: &writeCounter{Conn: guestEnd}, toHost: &writeCounter{Conn: hostEnd}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	e.tr = &tracker{f: f}
	var counts Counts
	go func() { done <- e.tr.pipe(ctx, e.toGuest, e.toHost, &counts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("framedPipe: %v", err)
		}
	})
	return e
}

// framedSocketPair returns the two ends of a connected Unix stream socket.
func framedSocketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var c [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c[i].Close() })
	}
	return c[0], c[1]
}

// pieces writes each piece with a pause between, so that the relay reads
// them one by one.
func pieces(t *testing.T, c net.Conn, p ...[]byte) {
	t.Helper()
	for i, b := range p {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

func header(cmd uint32, size int) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(size)), cmd)
}

// transmit returns the three pieces of a TRANSMIT request with an APDU of
// n bytes, and the two of its reply with r bytes of response.
func transmit(n, r int) (req [3][]byte, rep [2][]byte) {
	st := make([]byte, pcsc.TransmitSize)
	binary.LittleEndian.PutUint32(st[12:], uint32(n)) // cbSendLength
	req = [3][]byte{header(pcsc.CmdTransmit, pcsc.TransmitSize), st, bytes.Repeat([]byte{0xa5}, n)}
	rs := make([]byte, pcsc.TransmitSize)
	binary.LittleEndian.PutUint32(rs[24:], uint32(r)) // pcbRecvLength
	rep = [2][]byte{rs, bytes.Repeat([]byte{0x5a}, r)}
	return req, rep
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A request written in three pieces and a reply written in two each leave
// the relay in one write, unchanged.
func TestFramedWholeMessages(t *testing.T) {
	e := startFramed(t, framed{version: pcsc.V44, slots: pcsc.DefaultSlots, hold: time.Minute})
	for _, n := range []int{5, 261, 65536} {
		req, rep := transmit(n, 14)
		pieces(t, e.client, req[:]...)
		want := bytes.Join(req[:], nil)
		if got := readN(t, e.daemon, len(want)); !bytes.Equal(got, want) {
			t.Fatalf("APDU of %d: request changed", n)
		}
		pieces(t, e.daemon, rep[:]...)
		want = bytes.Join(rep[:], nil)
		if got := readN(t, e.client, len(want)); !bytes.Equal(got, want) {
			t.Fatalf("APDU of %d: reply changed", n)
		}
		if w := e.toHost.take(); n < smallBufSize && len(w) != 1 {
			t.Errorf("APDU of %d: request in writes of %v, want one", n, w)
		}
		if w := e.toGuest.take(); len(w) != 1 {
			t.Errorf("APDU of %d: reply in writes of %v, want one", n, w)
		}
	}
}

// A failed TRANSMIT has no data: its struct goes out alone, at once.
func TestFramedShortReplyAtOnce(t *testing.T) {
	e := startFramed(t, framed{version: pcsc.V44, slots: pcsc.DefaultSlots, hold: time.Minute})
	req, rep := transmit(5, 14)
	pieces(t, e.client, req[:]...)
	readN(t, e.daemon, 8+pcsc.TransmitSize+5)
	binary.LittleEndian.PutUint32(rep[0][pcsc.TransmitSize-4:], 0x80100069) // SCARD_W_REMOVED_CARD
	start := time.Now()
	pieces(t, e.daemon, rep[0])
	readN(t, e.client, pcsc.TransmitSize)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a whole reply took %v", d)
	}
}

// The 4.4 WAIT: its reader array, which pcscd sends once registered, goes
// out as it comes (a signal could come between its records); the signal
// goes out at once, alone; the replies after it are whole again.
func TestFramedWaitSignal(t *testing.T) {
	e := startFramed(t, framed{version: pcsc.V44, slots: 2, hold: time.Minute})
	rec := make([]byte, pcsc.ReaderStateSize)
	copy(rec, "Reader 0")
	// Not registered yet: the array is held until whole.
	pieces(t, e.client, header(pcsc.CmdGetReadersState, 0))
	readN(t, e.daemon, 8)
	pieces(t, e.daemon, rec, rec)
	readN(t, e.client, 2*pcsc.ReaderStateSize)
	if w := e.toGuest.take(); len(w) != 1 {
		t.Errorf("array in writes of %v, want one", w)
	}
	pieces(t, e.client, header(pcsc.CmdWaitReaderStateChange, 0))
	readN(t, e.daemon, 8)
	pieces(t, e.daemon, rec, rec)
	readN(t, e.client, 2*pcsc.ReaderStateSize)
	start := time.Now()
	sig := make([]byte, pcsc.WaitSize)
	pieces(t, e.daemon, sig)
	readN(t, e.client, pcsc.WaitSize)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the signal took %v", d)
	}
	// The client stops waiting after the signal; pcscd answers nothing.
	pieces(t, e.client, header(pcsc.CmdStopWaiting, 0))
	readN(t, e.daemon, 8)
	// And the connection goes on, framed.
	req, rep := transmit(5, 14)
	pieces(t, e.client, req[:]...)
	readN(t, e.daemon, 8+pcsc.TransmitSize+5)
	e.toGuest.take()
	pieces(t, e.daemon, rep[:]...)
	readN(t, e.client, pcsc.TransmitSize+14)
	if w := e.toGuest.take(); len(w) != 1 {
		t.Errorf("reply after the wait in writes of %v, want one", w)
	}
}

// A tracking mistake (an array shorter than the relay expects) costs at
// most the hold limit per reply, never a hang, and only a few times: the
// bytes go through unchanged.
func TestFramedMistakeBounded(t *testing.T) {
	e := startFramed(t, framed{version: pcsc.V44, slots: 3, hold: 50 * time.Millisecond})
	start := time.Now()
	for range 10 {
		pieces(t, e.client, header(pcsc.CmdGetReadersState, 0))
		readN(t, e.daemon, 8)
		rec := bytes.Repeat([]byte{'R'}, pcsc.ReaderStateSize)
		pieces(t, e.daemon, rec)
		if got := readN(t, e.client, len(rec)); !bytes.Equal(got, rec) {
			t.Fatal("record changed")
		}
	}
	if d := time.Since(start); d > time.Duration(maxHoldMisses+3)*50*time.Millisecond {
		t.Errorf("10 replies took %v: held more than %d times", d, maxHoldMisses)
	}
}

// A stream the scanner cannot frame is copied as it is.
func TestFramedUnknownCommand(t *testing.T) {
	e := startFramed(t, framed{version: pcsc.V44, slots: pcsc.DefaultSlots, hold: time.Minute})
	junk := append(header(0x77, 3), 1, 2, 3)
	pieces(t, e.client, junk)
	if got := readN(t, e.daemon, len(junk)); !bytes.Equal(got, junk) {
		t.Fatal("bytes changed")
	}
	pieces(t, e.daemon, []byte("xyz"))
	readN(t, e.client, 3)
}
