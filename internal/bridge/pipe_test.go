package bridge

import (
	"io"
	"net"
	"slices"
	"testing"
)

// scriptedConn returns reads of the sizes in reads, then io.EOF, and
// records the size of each buffer it was given.
type scriptedConn struct {
	net.Conn
	reads []int
	sizes []int
}

func (c *scriptedConn) Read(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	if len(c.reads) == 0 {
		return 0, io.EOF
	}
	n := min(c.reads[0], len(p))
	c.reads = c.reads[1:]
	return n, nil
}

func (c *scriptedConn) Write(p []byte) (int, error) { return len(p), nil }

// A read that fills the small buffer moves the copy to the large one, and
// a read that does not fill the large one moves it back: an idle
// connection waits on the small buffer whatever it carried before.
func TestCopyBytesBuffers(t *testing.T) {
	const s, b = smallBufSize, bigBufSize
	src := &scriptedConn{reads: []int{100, s, b, 1000, 50, s, 200}}
	if err := copyBytes(&scriptedConn{}, src, nil); err != nil {
		t.Fatal(err)
	}
	want := []int{s, s, b, b, s, s, b, s}
	if !slices.Equal(src.sizes, want) {
		t.Errorf("read buffer sizes %v, want %v", src.sizes, want)
	}
}

// A host end without a half-close, as net.Pipe (the native backend's
// connection on Windows, nativepcsc's socketPair there): when the guest
// ends, Pipe closes both, and the other direction's io.ErrClosedPipe is
// how the relay ends, not a failure (it was logged as "guest connection
// failed" for every connection under Wine).
func TestPipeEndsQuietlyOverNetPipe(t *testing.T) {
	guest, guestPeer := net.Pipe()
	host, hostPeer := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Pipe(t.Context(), guest, host, nil) }()
	go io.Copy(io.Discard, hostPeer)
	if _, err := guestPeer.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	guestPeer.Close()
	if err := <-done; err != nil {
		t.Errorf("Pipe = %v, want nil", err)
	}
	hostPeer.Close()
}
