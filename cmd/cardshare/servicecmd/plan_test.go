package servicecmd

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/cardshare/cardshare/internal/service"
)

func cmd(mayFail bool, args ...string) service.Command {
	return service.Command{Args: args, MayFail: mayFail}
}

// On Linux the first command that must not fail and fails means "no user
// manager here": it and the rest are kept for the user, with the failed
// MayFail ones before it. Elsewhere, and once a command has worked, a
// failure is an error.
func TestServiceRunner(t *testing.T) {
	ctx := context.Background()
	noManager := cmd(false, "sh", "-c", "echo 'Failed to connect to bus: No medium found' >&2; exit 1")
	run, d := serviceRunner("linux")
	for _, c := range []service.Command{cmd(true, "false"), noManager, cmd(false, "true")} {
		if err := run(ctx, c); err != nil && !c.MayFail {
			t.Fatalf("%s: %v", c, err)
		}
	}
	var out bytes.Buffer
	if !d.print(&out, "start the service") || d.why != "Failed to connect to bus: No medium found" || len(d.cmds) != 3 {
		t.Errorf("deferred %+v", d)
	}
	if !strings.Contains(out.String(), "    false\n    sh -c") {
		t.Errorf("printed:\n%s", out.String())
	}

	run, d = serviceRunner("linux")
	if err := run(ctx, cmd(false, "true")); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, noManager); err == nil || d.why != "" {
		t.Errorf("after a working command: %v, %+v", err, d)
	}
	for _, goos := range []string{"darwin", "windows"} {
		run, d = serviceRunner(goos)
		if err := run(ctx, noManager); err == nil || d.print(&out, "") {
			t.Errorf("%s: %v, %+v", goos, err, d)
		}
	}
	run, d = serviceRunner("linux")
	if err := run(ctx, cmd(false, "/nonexistent/systemctl")); err != nil || d.why != "no /nonexistent/systemctl program" {
		t.Errorf("no systemctl: %v, %q", err, d.why)
	}
}

// --dry-run prints each OS's file as text (the task's XML, not its
// UTF-16 bytes) and the commands install would run.
func TestPrintPlan(t *testing.T) {
	t.Setenv("HOME", "/Users/me")
	t.Setenv("XDG_CONFIG_HOME", "")
	getuid = func() int { return 501 } // launchd's gui/UID needs a user's UID, also under root
	t.Cleanup(func() { getuid = os.Getuid })
	t.Setenv("LOCALAPPDATA", `C:\Users\me\AppData\Local`)
	for goos, want := range map[string][]string{
		"darwin":  {"# /Users/me/Library/LaunchAgents/com.github.cardshare.up.plist\n", "<string>/Users/me/Library/Logs/cardshare/up.log</string>", "# then: launchctl bootstrap gui/"},
		"windows": {`# C:\Users\me\AppData\Local\cardshare\cardshare-task.xml`, `<Arguments>up --config C:\c.yaml --log-file C:\Users\me\AppData\Local\cardshare\up.log</Arguments>`, `# then: schtasks /Create /XML`},
		"linux":   {"# /Users/me/.config/systemd/user/cardshare.service\n", "ExecStart=/usr/bin/cardshare up --config /c.yaml\n", "# then: systemctl --user enable --now cardshare.service\n"},
	} {
		bin, file := "/usr/bin/cardshare", "/c.yaml"
		if goos == "windows" {
			bin, file = `C:\cardshare.exe`, `C:\c.yaml`
		}
		p, s, err := servicePlan(goos, bin, file)
		if err != nil {
			t.Fatalf("%s: %v", goos, err)
		}
		var out bytes.Buffer
		if err := printPlan(&out, goos, p, s); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: no %q in\n%s", goos, w, out.String())
			}
		}
	}
}
