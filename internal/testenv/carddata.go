package testenv

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/cardshare/cardshare/internal/vcard"
)

// cardData are the distinctive byte strings of the hello-world exchange
// that the C client's hello and bench modes run: the applet's AID, the
// SELECT command that carries it, and the card's answer. The hello command
// itself, 00 00 00 00, is left out: four zero bytes appear in any dump.
var cardData = []struct{ name, data string }{
	{"the applet's AID", vcard.HelloAID},
	{"the SELECT APDU", "\x00\xa4\x04\x00\x0a" + vcard.HelloAID},
	{"the response", vcard.Greeting + "\x90\x00"},
	{"the greeting", vcard.Greeting},
}

// CardDataIn returns what of the hello-world exchange's bytes text holds, in
// any of the forms a log line might give them: raw or quoted, hex in either
// case with or without separators, base64 at any alignment (slog's JSON
// handler writes a []byte so), or Go's %v of a []byte. A log must hold none,
// at any level. Each finding names the bytes and the form.
func CardDataIn(text string) []string {
	var found []string
	for _, d := range cardData {
		for form, s := range encodings(d.data) {
			if strings.Contains(text, s) {
				found = append(found, fmt.Sprintf("%s as %s: %q", d.name, form, s))
			}
		}
	}
	return found
}

// encodings returns data in the forms that CardDataIn looks for.
func encodings(data string) map[string]string {
	b := []byte(data)
	e := map[string]string{
		"raw bytes":       data,
		"Go %q":           strings.Trim(strconv.Quote(data), `"`),
		"hex":             hex.EncodeToString(b),
		"HEX":             strings.ToUpper(hex.EncodeToString(b)),
		"spaced hex":      fmt.Sprintf("% x", b),
		"spaced HEX":      fmt.Sprintf("% X", b),
		"colon hex":       strings.ReplaceAll(fmt.Sprintf("% x", b), " ", ":"),
		"Go %v of []byte": strings.Trim(fmt.Sprint(b), "[]"),
	}
	// In base64 the same bytes read differently at each offset modulo 3;
	// the characters away from both ends depend on data alone.
	for off := range 3 {
		s := base64.StdEncoding.EncodeToString(append(make([]byte, off), b...))
		e[fmt.Sprintf("base64 at offset %d", off)] = s[4 : len(s)-4]
	}
	return e
}
