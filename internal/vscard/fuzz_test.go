package vscard

import (
	"bytes"
	"testing"
)

// FuzzReader decodes a stream of messages; every message that decodes must
// encode back to the bytes it came from, and so must its typed payload
// (Init, Error). Seeds: testdata/fuzz/FuzzReader, from the exchanges of a
// real QEMU 7.2 (Init, ReaderAdd's answer, ATR, APDUs, CardRemove).
func FuzzReader(f *testing.F) {
	f.Add(AppendMessage(nil, Init, UndefinedReaderID, NewInit().Append(nil)))
	f.Add(AppendMessage(AppendMessage(nil, APDU, 0, []byte{0, 0, 0, 0}), Error, 0, AppendError(nil, Success)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		consumed := 0
		for {
			m, err := r.Next()
			if err != nil {
				return
			}
			enc := AppendMessage(nil, m.Type, m.ReaderID, m.Payload)
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("round trip: %x != %x", enc, data[consumed:consumed+len(enc)])
			}
			consumed += len(enc)
			switch m.Type {
			case Init:
				if p, err := ParseInit(m.Payload); err == nil {
					if got := p.Append(nil); !bytes.Equal(got, m.Payload) {
						t.Fatalf("Init round trip: %x != %x", got, m.Payload)
					}
				}
			case Error:
				if c, err := ParseError(m.Payload); err == nil {
					if got := AppendError(nil, c); !bytes.Equal(got, m.Payload) {
						t.Fatalf("Error round trip: %x != %x", got, m.Payload)
					}
				}
			}
		}
	})
}
