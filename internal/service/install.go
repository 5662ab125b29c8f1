package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

// Runner runs one command of a plan. ExecRunner runs it; a dry run or a
// test records it instead.
type Runner func(ctx context.Context, c Command) error

// ExecRunner runs c and returns a *CommandError with its first line of
// output when it fails.
func ExecRunner(ctx context.Context, c Command) error {
	out, err := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if msg == "" {
			msg = err.Error()
		}
		return &CommandError{Command: c, Output: msg, Err: err}
	}
	return nil
}

// CommandError is a command of a plan that failed: callers print Output,
// the service manager's own words, and tell a missing program
// (errors.Is(err, exec.ErrNotFound)) from a refusal.
type CommandError struct {
	Command Command
	// Output is the first line of what the command printed, or the error
	// when it printed nothing.
	Output string
	Err    error
}

func (e *CommandError) Error() string { return "service: " + e.Command.String() + ": " + e.Output }
func (e *CommandError) Unwrap() error { return e.Err }

// Change says what Install did to the service file.
type Change int

const (
	Created   Change = iota // there was none
	Updated                 // it differed and was replaced
	Unchanged               // it was the same
)

// Install writes p.Path when its content differs (atomically, mode 0644,
// creating its directory and p.Dirs) and runs p.Install for a new or
// unchanged file, p.Restart for a changed one. Commands with MayFail may
// fail; the first other failure stops it.
func Install(ctx context.Context, p Plan, run Runner) (Change, error) {
	old, err := os.ReadFile(p.Path)
	change := Updated
	switch {
	case errors.Is(err, fs.ErrNotExist):
		change = Created
	case err != nil:
		return 0, fmt.Errorf("service: %w", err)
	case bytes.Equal(old, p.Content):
		change = Unchanged
	}
	for _, d := range p.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, fmt.Errorf("service: %w", err)
		}
	}
	if change != Unchanged {
		if err := writeFileAtomic(p.Path, p.Content); err != nil {
			return 0, fmt.Errorf("service: write %s: %w", p.Path, err)
		}
	}
	steps := p.Install
	if change == Updated {
		steps = p.Restart
	}
	return change, runAll(ctx, steps, run)
}

// Uninstall runs p.Uninstall, removes p.Path and runs p.AfterRemove. A
// service that was never installed is not an error.
func Uninstall(ctx context.Context, p Plan, run Runner) error {
	if err := runAll(ctx, p.Uninstall, run); err != nil {
		return err
	}
	if err := os.Remove(p.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("service: %w", err)
	}
	return runAll(ctx, p.AfterRemove, run)
}

func runAll(ctx context.Context, cmds []Command, run Runner) error {
	for _, c := range cmds {
		if err := run(ctx, c); err != nil && !c.MayFail {
			return err
		}
	}
	return nil
}
