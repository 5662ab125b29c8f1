// Package logtest checks cardshare's log lines in tests: one key, one
// meaning, so no line may carry the same key twice (`guest=myvm
// guest="pcsc-lite 1.9.9"` loses the guest's name in every JSON consumer,
// which keeps only the last). [Handler] wraps a slog.Handler and reports
// every record whose keys repeat, counting those added with With;
// [CheckJSON] does the same for the JSON lines a process wrote. [Buffer]
// collects log output that goroutines write while the test reads it.
//
// It is for tests; it imports only the standard library and must not
// import any cardshare package.
package logtest
