package cmdutil

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/pflag"
)

// Globals are the flags every subcommand shares, and the streams of the
// process.
type Globals struct {
	Verbose   bool
	LogFormat string
	Stdin     io.Reader
	Stderr    io.Writer
}

// Logger is the logger of a command: text or JSON on stderr, debug with -v.
func (g *Globals) Logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if g.Verbose {
		opts.Level = slog.LevelDebug
	}
	if g.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.Stderr, opts))
}

// ServiceLogger is the logger of a long-running command: --log-format and
// -v, when given, win over the config file's log_format and log_level.
func (g *Globals) ServiceLogger(flags *pflag.FlagSet, format string, level *slog.LevelVar) *slog.Logger {
	if fl := flags.Lookup("log-format"); fl != nil && fl.Changed || format == "" {
		format = g.LogFormat
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(g.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.Stderr, opts))
}

// PrintError prints err, and each error it joins, as `cardshare: error:`
// lines, each followed by its hint when one is known. Errors are printed
// here and only here.
func PrintError(w io.Writer, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		fmt.Fprintf(w, "cardshare: error: %s\n", e.Error())
		if h := Hint(e); h != "" {
			fmt.Fprintf(w, "cardshare: hint: %s\n", h)
		}
	}
}

// usageError marks errors in the command line itself.
type usageError struct{ msg, hint string }

func (e *usageError) Error() string { return e.msg }

func hintOf(err error) (string, bool) {
	var u *usageError
	if errors.As(err, &u) && u.hint != "" {
		return u.hint, true
	}
	return "", false
}

// Usage is an error in the command line itself, with what to type instead.
func Usage(msg, hint string) error { return &usageError{msg, hint} }
