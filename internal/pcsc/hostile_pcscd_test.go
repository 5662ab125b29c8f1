package pcsc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cardshare/cardshare/internal/pcsc"
	"github.com/cardshare/cardshare/internal/pcsc/proxy"
	"github.com/cardshare/cardshare/internal/testenv"
	"github.com/cardshare/cardshare/internal/vcard"
)

// TestHostileGuestPCSCD is FuzzHostileGuest against the real pcscd (the
// Debian one, protocol 4.4) and vpcd's two readers: every sequence of up to
// three reader state commands and cancels of each guest dialect, after a
// WAIT whose dump the guest has read, written in one write, split at every
// byte, and one command per write, while a card goes in and out of the
// hidden reader. The shown reader stays empty, so the hidden card's ATR
// must not reach the guest either.
func TestHostileGuestPCSCD(t *testing.T) {
	p := testenv.StartPCSCD(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		toggleCard(ctx, p, testenv.VPCDReader)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	atr := []byte(vcard.ATR)

	const cancelOp = 9
	for _, d := range []proxy.Dialect{
		{Guest: pcsc.V44, Host: pcsc.V44},
		{Guest: pcsc.V45, Host: pcsc.V44},
		{Guest: pcsc.V46, Host: pcsc.V44},
	} {
		var alphabet []byte
		for op, cmd := range hostileCommands {
			if d.Guest.Supports(cmd) && !(d.Guest == pcsc.V46 && cmd == pcsc.CmdGetReadersState) {
				alphabet = append(alphabet, byte(op))
			}
		}
		alphabet = append(alphabet, cancelOp)
		t.Run(d.Guest.String()+"-on-"+d.Host.String(), func(t *testing.T) {
			runs := 0
			for _, seq := range sequences(alphabet, 3) {
				for _, grouping := range []string{"one write", "split at every byte", "one write each"} {
					ops := []byte{0, 6, 8} // WAIT, its dump read
					for _, op := range seq {
						ops = append(ops, op)
						if grouping == "one write each" && op != cancelOp {
							ops = append(ops, 6, 8)
						}
					}
					switch grouping {
					case "one write":
						ops = append(ops, 6, 8)
					case "split at every byte":
						ops = append(ops, 7, 0, 8)
					}
					got := runHostile(t, p.Socket, d, nil, ops)
					runs++
					if l := leaks(got, atr); l != "" {
						t.Fatalf("ops %v (%s): the guest received %s", ops, grouping, l)
					}
				}
			}
			t.Logf("%d hostile runs", runs)
		})
	}
}

// sequences returns every sequence of 1 to n letters of alphabet.
func sequences(alphabet []byte, n int) [][]byte {
	var all [][]byte
	last := [][]byte{nil}
	for range n {
		var next [][]byte
		for _, s := range last {
			for _, c := range alphabet {
				next = append(next, append(append([]byte(nil), s...), c))
			}
		}
		all = append(all, next...)
		last = next
	}
	return all
}

// toggleCard puts a test card into reader and takes it out again, each
// about as often as pcscd polls vpcd, until ctx ends: reader events at
// moments no hostile run chooses.
func toggleCard(ctx context.Context, p *testenv.PCSCD, reader string) {
	for ctx.Err() == nil {
		conn, err := p.DialVPCD(reader)
		if err != nil {
			return
		}
		card, err := vcard.New(conn)
		if err != nil {
			conn.Close()
			return
		}
		done := make(chan struct{})
		go func() {
			card.Serve(ctx)
			close(done)
		}()
		select {
		case <-ctx.Done():
		case <-time.After(700 * time.Millisecond):
		}
		card.Close()
		<-done
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
