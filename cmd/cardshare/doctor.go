package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/doctor"
	"github.com/cardshare/cardshare/internal/hostcheck"
	"github.com/cardshare/cardshare/internal/hostpcsc"
	"github.com/cardshare/cardshare/internal/scard"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/sshpaths"
	"github.com/cardshare/cardshare/internal/vm"
)

type doctorOptions struct {
	sshConfig   string
	acceptNew   bool
	guestSocket string
	pcscdSocket string
	backend     string
	strict      bool
	qemu        string
}

func newDoctorCmd(g *cmdutil.Globals) *cobra.Command {
	o := &doctorOptions{pcscdSocket: cmdutil.DefaultPCSCDSocket(), backend: hostpcsc.Auto}
	cmd := &cobra.Command{
		Use:   "doctor [GUEST]",
		Short: "Check the host, and a guest, for what cardshare needs; print a fix for each problem",
		Long: `doctor checks, in order, and prints a line per check (OK, WARN, FAIL or SKIP)
with a fix for each problem:

  backend         which --backend serves the guests; for auto, what it picks and why
                  (the native backend then replaces the next two checks: host PC/SC
                  answers, and its readers)
  host pcscd      the host pcscd answers, and its protocol version
  readers         pcscd lists at least one reader
  polkit          whether pcscd's polkit check may refuse cardshare (pcscd built with
                  polkit, cardshare outside an active local session, e.g. as a service)

On macOS and Windows, which have no pcscd socket, the host checks are instead:

  PC/SC service   PC/SC answers (Windows starts its Smart Card service only while
                  a reader is attached); not checked yet without the native backend
  readers         PC/SC lists at least one reader
  macOS           the macOS release has no known PC/SC bug (SCardControl before 14.3)
  ssh program     Windows' own OpenSSH (or any ssh on macOS) for ssh -G
  ssh-agent       the agent answers and holds keys (launchd's socket, the Windows
                  OpenSSH agent's pipe or Pageant)
  WSL2            with WSL installed: the networking mode the relay must fit

and with GUEST (an ssh_config alias, [user@]host[:port] or a VM name, as for expose):

  ssh             the guest is reachable and accepts your key
  forwarding      the guest's sshd allows Unix socket forwarding
  guest socket    the socket's directory is private, and what is at the path now
  libpcsclite     the guest's pcsc-lite client library and the host pcscd can talk
  environment     the login user's programs are pointed at the socket (guest setup)

and with --qemu DOMAIN or --qemu CHARDEV (for ` + "`cardshare qemu attach`" + `):

  qemu domain     the libvirt domain has <smartcard mode='passthrough'> devices
  qemu chardev    each chardev socket is there and QEMU answers on it

doctor changes nothing, except that it creates the guest socket's private
directory as expose would. The exit status is 0 when no check fails; warnings
fail only with --strict.`,
		Example: `  cardshare doctor
  cardshare doctor myvm
  cardshare doctor --guest-socket /home/me/.pcsc/pcscd.comm myvm`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return cmdutil.Usage(fmt.Sprintf("doctor checks one guest at a time, got %d", len(args)), "run `cardshare doctor GUEST` for each guest")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctor(cmd.Context(), g, o, args, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	cmdutil.SSHConfigFlag(f, &o.sshConfig)
	cmdutil.AcceptNewFlag(f, &o.acceptNew)
	cmdutil.GuestSocketFlag(f, &o.guestSocket, ", as given to expose (default: expose's default)")
	cmdutil.PCSCDSocketFlag(f, &o.pcscdSocket)
	cmdutil.BackendFlag(f, &o.backend)
	f.BoolVar(&o.strict, "strict", false, "exit non-zero on warnings too")
	f.StringVar(&o.qemu, "qemu", "", "also check a QEMU guest for `cardshare qemu attach`: a libvirt `DOMAIN`, or a chardev unix:PATH or tcp:HOST:PORT")
	return cmd
}

func runDoctor(ctx context.Context, g *cmdutil.Globals, o *doctorOptions, args []string, w io.Writer) error {
	cfg := &doctor.Config{
		PCSCDSocket: o.pcscdSocket,
		Backend:     o.backend,
		SSHConfig:   o.sshConfig,
		GuestSocket: o.guestSocket,
		Dial:        sshdial.DialOptions{AcceptNew: o.acceptNew, Prompt: terminalPrompt(), Logger: g.Logger()},
		Report:      func(name string, r doctor.Result) { printCheck(w, name, r) },
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		cfg.Host = hostChecks(sshpaths.Current())
	}
	guest := ""
	if len(args) == 1 {
		guest = args[0]
	}
	// Fixes that are commands carry the user's -F and the guest's name.
	words := cmdutil.Guest{Name: guest, SSHConfig: o.sshConfig}
	cfg.Hint = func(err error) string { return cmdutil.GuestHint(err, words) }
	sum := doctor.Run(ctx, cfg, guest)
	if o.qemu != "" {
		q := doctor.QEMU(ctx, cfg, vm.ExecRunner, o.qemu, false)
		sum.Failed, sum.Warned = sum.Failed+q.Failed, sum.Warned+q.Warned
	}
	switch {
	case sum.Failed > 0:
		return fmt.Errorf("%w: %d failed, %d warned", cmdutil.ErrChecksFailed, sum.Failed, sum.Warned)
	case sum.Warned > 0 && o.strict:
		return fmt.Errorf("%w: %d warned (--strict)", cmdutil.ErrChecksFailed, sum.Warned)
	}
	return nil
}

// probeNativePCSC asks the host's PC/SC API (the native backend's
// library) what doctor's macOS and Windows checks need: whether a context
// can be had, and which readers are attached.
var probeNativePCSC = func(context.Context) hostcheck.PCSC {
	lib, err := scard.Open()
	if err != nil {
		return hostcheck.PCSC{Err: err}
	}
	ctx, err := lib.EstablishContext(scard.ScopeSystem)
	p := hostcheck.PCSC{EstablishCode: uint32(scard.CodeOf(err))}
	if err != nil {
		return p
	}
	defer lib.ReleaseContext(ctx)
	p.Readers, err = lib.ListReaders(ctx)
	p.ListCode = uint32(scard.CodeOf(err))
	return p
}

// hostChecks are doctor's host checks on macOS and Windows (h.GOOS), which
// have no pcscd socket: internal/hostcheck's PC/SC service, readers, macOS
// version, ssh program, ssh-agent and WSL2 checks.
func hostChecks(h sshpaths.Host) func(context.Context) []doctor.HostCheck {
	return func(ctx context.Context) []doctor.HostCheck {
		var out []doctor.HostCheck
		for _, r := range hostcheck.Checks(hostcheck.Gather(ctx, h, probeNativePCSC(ctx), 0)) {
			out = append(out, doctor.HostCheck{Name: r.Name, Result: doctor.Result{Status: doctor.Status(r.Status), Msg: r.Msg, Fix: r.Fix}})
		}
		return out
	}
}

// printCheck prints one line of doctor's report, and the fix of a problem.
func printCheck(w io.Writer, name string, r doctor.Result) {
	fmt.Fprintf(w, "%-4s  %-13s %s\n", r.Status, name, r.Msg)
	if r.Fix != "" && (r.Status == doctor.Fail || r.Status == doctor.Warn) {
		fmt.Fprintf(w, "      %-13s %s\n", "", "fix: "+r.Fix)
	}
}
