package main

import (
	"testing"

	"github.com/cardshare/cardshare/config"
)

// The example in `cardshare config --help` is a valid file, without a
// warning.
func TestConfigHelpExample(t *testing.T) {
	c, err := config.Parse("help", []byte(configExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Guests) != 3 || len(c.Warnings()) != 0 {
		t.Errorf("example: %d guests, warnings %v", len(c.Guests), c.Warnings())
	}
}
