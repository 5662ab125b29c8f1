package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cardshare/cardshare/cmd/cardshare/cmdutil"
	"github.com/cardshare/cardshare/internal/doctor"
	"github.com/cardshare/cardshare/internal/sshdial"
	"github.com/cardshare/cardshare/internal/vm"
)

type doctorOptions struct {
	sshConfig   string
	acceptNew   bool
	guestSocket string
	pcscdSocket string
	strict      bool
	qemu        string
}

func newDoctorCmd(g *cmdutil.Globals) *cobra.Command {
	o := &doctorOptions{pcscdSocket: cmdutil.DefaultPCSCDSocket()}
	cmd := &cobra.Command{
		Use:   "doctor [GUEST]",
		Short: "Check the host, and a guest, for what cardshare needs; print a fix for each problem",
		Long: `doctor checks, in order, and prints a line per check (OK, WARN, FAIL or SKIP)
with a fix for each problem:

  host pcscd      the host pcscd answers, and its protocol version
  readers         pcscd lists at least one reader
  polkit          whether pcscd's polkit check may refuse cardshare (pcscd built with
                  polkit, cardshare outside an active local session, e.g. as a service)

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
	f.BoolVar(&o.strict, "strict", false, "exit non-zero on warnings too")
	f.StringVar(&o.qemu, "qemu", "", "also check a QEMU guest for `cardshare qemu attach`: a libvirt `DOMAIN`, or a chardev unix:PATH or tcp:HOST:PORT")
	return cmd
}

func runDoctor(ctx context.Context, g *cmdutil.Globals, o *doctorOptions, args []string, w io.Writer) error {
	cfg := &doctor.Config{
		PCSCDSocket: o.pcscdSocket,
		SSHConfig:   o.sshConfig,
		GuestSocket: o.guestSocket,
		Dial:        sshdial.DialOptions{AcceptNew: o.acceptNew, Prompt: terminalPrompt(), Logger: g.Logger()},
		Hint:        cmdutil.Hint,
		Report:      func(name string, r doctor.Result) { printCheck(w, name, r) },
	}
	guest := ""
	if len(args) == 1 {
		guest = args[0]
	}
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

// printCheck prints one line of doctor's report, and the fix of a problem.
func printCheck(w io.Writer, name string, r doctor.Result) {
	fmt.Fprintf(w, "%-4s  %-13s %s\n", r.Status, name, r.Msg)
	if r.Fix != "" && (r.Status == doctor.Fail || r.Status == doctor.Warn) {
		fmt.Fprintf(w, "      %-13s %s\n", "", "fix: "+r.Fix)
	}
}
