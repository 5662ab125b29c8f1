package config

import (
	"reflect"
	"testing"
)

// The ccid: entries of good-ccid.yaml, as `up` gets them.
func TestCCIDEntries(t *testing.T) {
	c, err := Load("testdata/good-ccid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []*CCID{
		{Reader: "Yubico*"},
		{Reader: "*", Chardevs: []string{"unix:/run/vm/ccid0.sock", "tcp:127.0.0.1:35963"}, Listen: true, Exclusive: true, T1: true},
		nil,
	}
	for i, g := range c.Guests {
		if !reflect.DeepEqual(g.CCID, want[i]) {
			t.Errorf("guest %d (%s): %+v, want %+v", i, g.Name, g.CCID, want[i])
		}
	}
	if c.Guests[0].Name != "win11" || c.Guests[1].Name != "plainqemu" {
		t.Errorf("names %q %q", c.Guests[0].Name, c.Guests[1].Name)
	}
	// A single chardev is a list of one.
	c, err = Parse("x.yaml", []byte("guests:\n  - name: q\n    ccid: {reader: '*', chardev: unix:/run/q.sock}\n"))
	if err != nil || !reflect.DeepEqual(c.Guests[0].CCID.Chardevs, []string{"unix:/run/q.sock"}) {
		t.Errorf("one chardev: %+v %v", c, err)
	}
}
