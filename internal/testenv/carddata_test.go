package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cardshare/cardshare/internal/vcard"
)

// CardDataIn finds the card's bytes however a logger might print them, and
// nothing in a clean log line.
func TestCardDataIn(t *testing.T) {
	for _, d := range cardData {
		for form, s := range encodings(d.data) {
			if len(CardDataIn("prefix "+s+" suffix")) == 0 {
				t.Errorf("%s as %s (%q) not found", d.name, form, s)
			}
		}
	}
	// What loggers do with a []byte, at every offset in a larger buffer.
	for off := range 3 {
		buf := append(bytes.Repeat([]byte{0x55}, off), vcard.HelloAID...)
		buf = append(buf, 0x00, 0x17)
		var text, js bytes.Buffer
		slog.New(slog.NewTextHandler(&text, nil)).Info("msg", "data", buf)
		slog.New(slog.NewJSONHandler(&js, nil)).Info("msg", "data", buf)
		jm, _ := json.Marshal(map[string][]byte{"d": buf})
		for _, s := range []string{text.String(), js.String(), string(jm), fmt.Sprintf("%v %x %q", buf, buf, buf)} {
			if len(CardDataIn(s)) == 0 {
				t.Errorf("AID at offset %d not found in %q", off, s)
			}
		}
	}
	clean := `time=2026-11-25T02:10:14.521Z level=DEBUG msg="guest connection closed" guest=guest conn=6 up_bytes=1234 down_bytes=5678 duration=12ms`
	if f := CardDataIn(clean); len(f) > 0 {
		t.Errorf("false positives in a clean line: %q", f)
	}
}
