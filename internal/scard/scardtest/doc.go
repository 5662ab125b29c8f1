// Package scardtest helps tests use package scard: UseSocket points this
// process's libpcsclite at a test pcscd, and Fake is an in-memory
// scard.Library with scriptable readers and cards for unit and fuzz tests.
//
// It must not import anything of cardshare's but scard.
package scardtest
