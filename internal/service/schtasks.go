package service

import (
	"encoding/xml"
	"errors"
	"strings"
	"unicode/utf16"
)

// TaskXML is the Task Scheduler definition (schema
// http://schemas.microsoft.com/windows/2004/02/mit/task, version 1.2,
// Windows 7 and later; Microsoft Learn "Task Scheduler Schema") of a task
// that runs s when s.WindowsUser logs on:
//
//   - LogonTrigger with UserId: only this user's logon starts it;
//   - Principal LogonType InteractiveToken, RunLevel LeastPrivilege: it
//     runs as the user, in the user's session, without a stored password
//     or elevation (see the package comment for why not a service);
//   - ExecutionTimeLimit PT0S: no limit (the default, 72 hours, would
//     stop up after three days); DisallowStartIfOnBatteries and
//     StopIfGoingOnBatteries false (both default to true, which stops up
//     on a laptop that is unplugged); MultipleInstancesPolicy IgnoreNew;
//   - RestartOnFailure every minute (the schema's shortest interval), up
//     to 999 times (its largest count). Users report that Task Scheduler
//     counts only a failure to start the program, not an exit with an
//     error (not verified here), so on Windows up must keep running
//     through failures itself, as it does for guests;
//   - Exec Arguments quoted for the program's own command-line parsing
//     (CommandLineToArgvW rules, which Go's runtime follows).
//
// The task starts a console program, so Windows opens a console window
// for it: up should call DetachConsole when it runs as the task.
func TaskXML(s Spec) (string, error) {
	if err := s.Validate("windows"); err != nil {
		return "", err
	}
	esc := func(v string) string {
		var b strings.Builder
		xml.EscapeText(&b, []byte(v))
		return b.String()
	}
	args := make([]string, len(s.Args))
	for i, a := range s.Args {
		args[i] = windowsQuoteArg(a)
	}
	cmd := s.Binary
	if strings.ContainsAny(cmd, " \t") {
		cmd = `"` + cmd + `"`
	}
	user := esc(s.WindowsUser)
	return `<?xml version="1.0" encoding="UTF-16"?>
<!-- Written by ` + "`cardshare service install`" + `; run it again to update this task. -->
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>` + description + `</Description>
    <URI>\` + WindowsTask + `</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>` + user + `</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>` + user + `</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>false</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>` + esc(cmd) + `</Command>
      <Arguments>` + esc(strings.Join(args, " ")) + `</Arguments>
    </Exec>
  </Actions>
</Task>
`, nil
}

// TaskFile is TaskXML as schtasks /Create /XML reads it reliably:
// UTF-16LE with a byte order mark and CRLF line ends, the form Task
// Scheduler itself exports.
func TaskFile(s Spec) ([]byte, error) {
	x, err := TaskXML(s)
	if err != nil {
		return nil, err
	}
	u := utf16.Encode([]rune("\ufeff" + strings.ReplaceAll(x, "\n", "\r\n")))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	return b, nil
}

// windowsQuoteArg quotes an argument so that CommandLineToArgvW (and Go's
// os.Args on Windows) gives it back unchanged: backslashes are literal
// unless they precede a double quote, where they are doubled; a double
// quote is escaped; the whole is wrapped in quotes when it holds a space,
// tab or quote, or is empty (Microsoft Learn, "Parsing C++ command-line
// arguments"; the same rules as syscall.EscapeArg, which only Windows
// builds have).
func windowsQuoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	slashes := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			slashes++
		case '"':
			b.WriteString(strings.Repeat(`\`, 2*slashes+1))
			slashes = 0
			b.WriteByte(c)
			continue
		default:
			b.WriteString(strings.Repeat(`\`, slashes))
			slashes = 0
			b.WriteByte(c)
			continue
		}
	}
	b.WriteString(strings.Repeat(`\`, 2*slashes))
	b.WriteByte('"')
	return b.String()
}

func taskPlan(s Spec, env Env) (Plan, error) {
	if !isWindowsAbs(env.LocalAppData) {
		return Plan{}, errors.New("service: no %LOCALAPPDATA% for the task's files")
	}
	content, err := TaskFile(s)
	if err != nil {
		return Plan{}, err
	}
	dir := winJoin(env.LocalAppData, windowsLogDir)
	file := winJoin(dir, "cardshare-task.xml")
	st := func(args ...string) Command { return Command{Args: append([]string{"schtasks"}, args...)} }
	end := Command{Args: []string{"schtasks", "/End", "/TN", WindowsTask}, MayFail: true} // fails when not running
	create := st("/Create", "/XML", file, "/TN", WindowsTask, "/F")
	run := st("/Run", "/TN", WindowsTask)
	return Plan{
		Path:      file,
		Content:   content,
		Dirs:      []string{dir},
		Install:   []Command{create, run},
		Restart:   []Command{end, create, run},
		Reload:    []Command{end, run},
		Uninstall: []Command{end, st("/Delete", "/TN", WindowsTask, "/F")},
		Status:    st("/Query", "/TN", WindowsTask, "/V", "/FO", "LIST"),
		Logs:      `Get-Content -Wait "` + LogFile("windows", env) + `"`,
	}, nil
}
