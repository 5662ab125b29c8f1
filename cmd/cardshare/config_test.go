package main

import (
	"testing"

	"github.com/cardshare/cardshare/config"
)

// The example in `cardshare config --help` is a valid file.
func TestConfigHelpExample(t *testing.T) {
	c, err := config.Parse("help", []byte(configExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Guests) != 2 || len(c.Warnings()) != 3 {
		t.Errorf("example: %d guests, warnings %v", len(c.Guests), c.Warnings())
	}
}
