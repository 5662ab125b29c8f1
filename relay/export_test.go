package relay

// ErrNotConnected lets the tests check what Agent.Dial returns while the
// agent is reconnecting.
var ErrNotConnected = errNotConnected
