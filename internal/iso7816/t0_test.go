package iso7816

import (
	"bytes"
	"testing"
)

func TestShortLe(t *testing.T) {
	for _, tc := range []struct {
		cmd []byte
		le  int
		ok  bool
	}{
		{[]byte{0, 0, 0, 0}, 0, false},
		{[]byte{0, 0, 0, 0, 0}, 256, true},
		{[]byte{0, 0, 0, 0, 12}, 12, true},
		{[]byte{0, 0, 0, 0, 2, 1, 2}, 0, false},
		{[]byte{0, 0, 0, 0, 2, 1, 2, 0}, 256, true},
		{[]byte{0, 0, 0, 0, 0, 1, 0}, 0, false}, // extended case 2
	} {
		le, ok := ShortLe(tc.cmd)
		if le != tc.le || ok != tc.ok {
			t.Errorf("% x: %d %v", tc.cmd, le, ok)
		}
	}
}

func TestResponderPassesThrough(t *testing.T) {
	r := Responder{Max: 374}
	resp := append(bytes.Repeat([]byte{1}, 300), 0x90, 0)
	if got := r.Shape([]byte{0, 0xb0, 0, 0}, resp); !bytes.Equal(got, resp) {
		t.Fatal("a T=1 guest's response under the limit changed")
	}
	if _, ok := r.GetResponse([]byte{0, 0xc0, 0, 0, 0}); ok {
		t.Fatal("GET RESPONSE answered with nothing held")
	}
	r.T0 = true
	if got := r.Shape([]byte{0, 0xa4, 4, 0, 1, 1}, []byte{0x6a, 0x82}); !bytes.Equal(got, []byte{0x6a, 0x82}) {
		t.Fatal("a status word alone changed")
	}
	// Another command drops what is held.
	r.Shape([]byte{0, 0, 0, 0}, []byte{1, 2, 0x90, 0})
	if _, ok := r.GetResponse([]byte{0, 0xa4, 0, 0}); ok || r.on {
		t.Fatal("held response survived another command")
	}
}

// FuzzResponder: GET RESPONSE chains give back exactly the card's response.
func FuzzResponder(f *testing.F) {
	f.Add(true, []byte{0, 0, 0, 0}, 12, byte(0))
	f.Add(false, []byte{0, 0xb0, 0, 0, 0}, 600, byte(0x10))
	f.Fuzz(func(t *testing.T, t0 bool, cmd []byte, n int, le byte) {
		if n < 0 || n > 4000 || len(cmd) < 4 {
			return
		}
		resp := make([]byte, n+2)
		for i := range n {
			resp[i] = byte(i)
		}
		resp[n], resp[n+1] = 0x90, 0
		r := Responder{T0: t0, Max: 374}
		got := r.Shape(cmd, resp)
		var all []byte
		for range 5000 {
			if len(got) > r.Max {
				t.Fatalf("piece of %d bytes", len(got))
			}
			sw1 := got[len(got)-2]
			if sw1 != 0x61 && sw1 != 0x6c {
				break
			}
			all = append(all, got[:len(got)-2]...)
			l := got[len(got)-1]
			if sw1 == 0x61 && le != 0 && le < l {
				l = le // the guest may fetch less
			}
			var ok bool
			if got, ok = r.GetResponse([]byte{0, 0xc0, 0, 0, l}); !ok {
				t.Fatal("GET RESPONSE not served")
			}
		}
		all = append(all, got...)
		if !bytes.Equal(all, resp) {
			t.Fatalf("got %d bytes back, want %d", len(all), len(resp))
		}
	})
}
