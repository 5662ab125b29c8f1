package service

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

type recorder struct {
	ran  []string
	fail map[string]bool
}

func (r *recorder) run(_ context.Context, c Command) error {
	r.ran = append(r.ran, c.String())
	if r.fail[c.String()] {
		return errors.New("failed")
	}
	return nil
}

func TestInstallUninstall(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the macOS and Linux plans have POSIX paths; TestInstallTask covers Windows")
	}
	home := t.TempDir()
	env := Env{Home: home}
	ctx := context.Background()
	p, err := PlanFor("darwin", macSpec, env)
	if err != nil {
		t.Fatal(err)
	}
	bootout := "launchctl bootout gui/501/com.github.cardshare.up"
	load := []string{bootout, "launchctl enable gui/501/com.github.cardshare.up",
		"launchctl bootstrap gui/501 " + filepath.Join(home, "Library/LaunchAgents/com.github.cardshare.up.plist")}

	// bootout fails when the agent is not loaded yet: that may fail.
	r := &recorder{fail: map[string]bool{bootout: true}}
	if ch, err := Install(ctx, p, r.run); err != nil || ch != Created || !slices.Equal(r.ran, load) {
		t.Fatalf("first install: %v %v, ran %q", ch, err, r.ran)
	}
	if b, _ := os.ReadFile(p.Path); string(b) != string(p.Content) {
		t.Error("plist not written")
	}
	if fi, err := os.Stat(filepath.Join(home, "Library/Logs/cardshare")); err != nil || !fi.IsDir() {
		t.Errorf("log directory: %v", err)
	}
	r.ran = nil
	if ch, err := Install(ctx, p, r.run); err != nil || ch != Unchanged {
		t.Errorf("second install: %v %v", ch, err)
	}

	// A changed file restarts the agent.
	s := macSpec
	s.Args = UpArgs("darwin", "/Users/me/other.yaml", "")
	p2, _ := PlanFor("darwin", s, env)
	if ch, err := Install(ctx, p2, r.run); err != nil || ch != Updated {
		t.Errorf("changed install: %v %v", ch, err)
	}

	// A command that must not fail stops the install.
	r2 := &recorder{fail: map[string]bool{load[2]: true}}
	if _, err := Install(ctx, p, r2.run); err == nil {
		t.Error("failed bootstrap not reported")
	}

	r.ran = nil
	if err := Uninstall(ctx, p, r.run); err != nil || !slices.Equal(r.ran, []string{bootout}) {
		t.Errorf("uninstall: %v, ran %q", err, r.ran)
	}
	if _, err := os.Stat(p.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plist left behind: %v", err)
	}
	if err := Uninstall(ctx, p, r.run); err != nil {
		t.Errorf("uninstall twice: %v", err)
	}

	// systemd: reload after the unit is gone.
	lp, _ := PlanFor("linux", linuxSpec, env)
	r.ran = nil
	Install(ctx, lp, r.run)
	if err := Uninstall(ctx, lp, r.run); err != nil || !slices.Equal(r.ran[len(r.ran)-2:], []string{"systemctl --user disable --now cardshare.service", "systemctl --user daemon-reload"}) {
		t.Errorf("systemd uninstall: %v, ran %q", err, r.ran)
	}
}

func TestExecRunner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses sh")
	}
	if err := ExecRunner(context.Background(), Command{Args: []string{"true"}}); err != nil {
		t.Errorf("true: %v", err)
	}
	err := ExecRunner(context.Background(), Command{Args: []string{"sh", "-c", "echo 'Bootstrap failed: 5: Input/output error' >&2; exit 5"}})
	if err == nil || err.Error() != "service: sh -c echo 'Bootstrap failed: 5: Input/output error' >&2; exit 5: Bootstrap failed: 5: Input/output error" {
		t.Errorf("err = %v", err)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || ce.Output != "Bootstrap failed: 5: Input/output error" {
		t.Errorf("CommandError = %+v", ce)
	}
	err = ExecRunner(context.Background(), Command{Args: []string{"/nonexistent/launchctl"}})
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing program: %v", err)
	}
}

// The Windows plan installed for real on Windows (and Wine): the task file
// is written under %LOCALAPPDATA%, and schtasks is asked as planned.
func TestInstallTask(t *testing.T) {
	if runtime.GOOS != "windows" {
		t.Skip("the Windows plan has Windows paths")
	}
	// Not t.TempDir: Wine cannot remove directories the way its cleanup does.
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p, err := PlanFor("windows", winSpec, Env{LocalAppData: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	if ch, err := Install(context.Background(), p, r.run); err != nil || ch != Created || len(r.ran) != 2 {
		t.Fatalf("install: %v %v, ran %q", ch, err, r.ran)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cardshare", "cardshare-task.xml")); err != nil || string(b) != string(p.Content) {
		t.Errorf("task file: %v", err)
	}
	if err := Uninstall(context.Background(), p, r.run); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(p.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("task file left: %v", err)
	}
}
