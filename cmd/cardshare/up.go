package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/config"
	"github.com/cardshare/cardshare/forward"
	"github.com/cardshare/cardshare/internal/connlimit"
	"github.com/cardshare/cardshare/internal/control"
	"github.com/cardshare/cardshare/internal/service"
	"github.com/cardshare/cardshare/internal/unixsock"
	"github.com/cardshare/cardshare/up"
)

type upOptions struct {
	config  string
	control string
	backend string
	logFile string
}

func newUpCmd(g *cmdutil.Globals) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Expose every guest of the config file and keep them up; SIGHUP reloads the file",
		Long: `up reads the config file, forwards the host pcscd into every guest it lists (as
expose does, one forward per guest), and runs until SIGINT or SIGTERM. It is
what the systemd service runs.

SIGHUP (systemctl --user reload cardshare) reloads the file: guests that were
removed stop, new guests start, changed guests restart (a changed host option
changes every guest), and guests whose settings did not change keep their
connections untouched. ssh_config is read again too. A file with an error is
refused with the file:line and a hint, and the running guests carry on as they
were; so does a running guest whose new settings do not resolve. A guest that
failed for good (an unknown host key, say) is retried on every reload.
log_level applies on reload, log_format at the next start.

` + "`cardshare status`" + ` shows each guest's state through a control socket, by default
$XDG_RUNTIME_DIR/cardshare/control.sock, in a directory only you can enter.

On a terminal, up also prints a line per guest state change; logs on stderr
stay machine-readable (log_format text or json in the config, or --log-format).`,
		Example: `  cardshare up
  cardshare up --config ./vms.yaml
  # reload after editing the file (the pid of this up, not every cardshare):
  kill -HUP "$(cardshare status --json | jq 'select(.mode != "relay") | .pid')"
  systemctl --user reload cardshare   # the same for the service
  cardshare status`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cmdutil.Usage("up takes no guests on the command line", "list the guests in the config file (see `cardshare config --help`), or use `cardshare expose "+args[0]+"`")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUp(cmd.Context(), g, o, cmd.Flags(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "config `file` (default $XDG_CONFIG_HOME/cardshare/config.yaml)")
	cmdutil.BackendFlag(f, &o.backend)
	f.StringVar(&o.control, "control-socket", "", "control socket `path` for `cardshare status` (default $XDG_RUNTIME_DIR/cardshare/control.sock)")
	f.StringVar(&o.logFile, "log-file", "", "append the log and progress to `file` instead of stderr and stdout (the Windows logon task's output goes nowhere else)")
	return cmd
}

func runUp(ctx context.Context, g *cmdutil.Globals, o *upOptions, flags *pflag.FlagSet, stdout io.Writer) (err error) {
	if o.logFile != "" {
		f, ferr := openLogFile(o.logFile)
		if ferr != nil {
			return ferr
		}
		defer f.Close()
		defer func() {
			if err != nil { // run prints it too, to a console that may be gone
				cmdutil.PrintError(f, err)
			}
		}()
		g.Stderr, stdout = f, f
		// The logon task's console window: closed when it is up's own.
		if derr := service.DetachConsole(); derr != nil {
			fmt.Fprintf(f, "cardshare: warning: detach from the console: %v\n", derr)
		}
	}
	// Before anything else: SIGHUP's default action ends the process. up
	// also owns SIGINT and SIGTERM (main catches them too), so that it
	// cleans up from any entry point.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	defer cmdutil.OneProc()()
	file, err := cmdutil.ConfigPath(o.config)
	if err != nil {
		return err
	}
	cfg, err := cmdutil.LoadConfig(file)
	if err != nil {
		return err
	}
	ctl := o.control
	if ctl != "" {
		if err := unixsock.CheckChosenDir(filepath.Dir(ctl)); err != nil {
			return fmt.Errorf("--control-socket: %w", err)
		}
	}
	if ctl == "" {
		if ctl, err = control.DefaultSocket(); err != nil {
			return err
		}
	}
	level := new(slog.LevelVar)
	log := g.ServiceLogger(flags, cfg.Host.LogFormat, level)
	out := &progress{w: stdout, chatty: isTerminal(g.Stderr), sockets: map[string]string{}}
	caps := cmdutil.ConnCaps{PerGuest: cfg.Host.MaxGuestConns, Total: cfg.Host.MaxConns}
	if caps.PerGuest == 0 {
		caps.PerGuest = connlimit.DefaultPerGuest
	}
	if caps.Total == 0 {
		caps.Total = max(connlimit.DefaultTotal, caps.PerGuest)
	}
	limiter, err := caps.Limiter(log)
	if err != nil {
		return err
	}
	sup := up.New(ctx, up.Options{
		Limiter:            limiter,
		File:               file,
		Logger:             log,
		Level:              level,
		Verbose:            g.Verbose,
		Prompt:             terminalPrompt(),
		DefaultPCSCDSocket: cmdutil.DefaultPCSCDSocket(),
		Backend:            o.backend,
		Hint:               cmdutil.Hint,
		GuestHint: func(c config.Guest, sshConfig string, err error) string {
			return cmdutil.GuestHint(err, cmdutil.Guest{Name: c.Target(), SSHConfig: sshConfig})
		},
		OnEvent:     out.event,
		Note:        out.note,
		SetupReport: setupReporter(stdout, log),
	})
	if err := sup.Load(cfg); err != nil {
		return err
	}

	stopControl, err := cmdutil.ServeControl(ctl, sup.Status, log)
	if err != nil {
		return err
	}
	defer stopControl()

	sup.Start()
	for {
		select {
		case <-ctx.Done():
			sup.Stop()
			log.Info("stopped")
			return nil
		case <-hup:
			sup.Reload()
		}
	}
}

// openLogFile opens up's --log-file for appending, making its directory
// (private: a log names guests and readers) when there is none.
func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}

// isTerminal reports whether w is a terminal, where a person waits for
// progress.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress prints what a person waits for: always the export line when a
// guest's socket is first known or moves, and on a terminal (chatty) one
// line per state change.
type progress struct {
	w      io.Writer
	chatty bool

	mu      sync.Mutex
	sockets map[string]string
}

func (p *progress) event(e forward.Event, dest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.State {
	case forward.StateUp:
		if p.sockets[e.Guest] != e.Socket {
			p.sockets[e.Guest] = e.Socket
			fmt.Fprintf(p.w, "%s: host pcscd is at %s in the guest:\n    export PCSCLITE_CSOCK_NAME=%s\n", e.Guest, e.Socket, e.Socket)
		} else if p.chatty {
			fmt.Fprintf(p.w, "%s: up again\n", e.Guest)
		}
	case forward.StateConnecting:
		if p.chatty {
			fmt.Fprintf(p.w, "%s: connecting to %s\n", e.Guest, dest)
		}
	case forward.StateBackoff:
		if p.chatty {
			fmt.Fprintf(p.w, "%s: %s; retrying in %s\n", e.Guest, e.Err, control.Until(time.Now(), e.Retry))
		}
	case forward.StateFailed:
		if p.chatty {
			fmt.Fprintf(p.w, "%s: failed: %s\n", e.Guest, e.Err)
		}
	case forward.StateStopped:
		delete(p.sockets, e.Guest)
		if p.chatty {
			fmt.Fprintf(p.w, "%s: stopped\n", e.Guest)
		}
	}
}

// note prints a line on a terminal only.
func (p *progress) note(format string, args ...any) {
	if !p.chatty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}
