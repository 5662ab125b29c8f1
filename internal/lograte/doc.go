// Package lograte lets one log event a second through and counts the
// others, so that a scan or a flood of bad connections costs one log line
// a second.
//
// lograte must not import anything of cardshare's.
package lograte
