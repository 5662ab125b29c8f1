package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/windows"
)

// isWine reports whether this runs under Wine, whose ntdll exports
// wine_get_version.
func isWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// TestSchtasks registers the logon task with the real schtasks, then
// deletes it (opt-in: CARDSHARE_TEST_SCHTASKS=1, which
// scripts/wine-hostside.sh sets in its throwaway Wine prefix). On Windows
// it checks that Task Scheduler accepts the XML and refuses to touch an
// existing task named cardshare. Wine's schtasks answers /Query with
// success whatever the task, so there the task file that Wine's Task
// Scheduler writes is checked instead.
func TestSchtasks(t *testing.T) {
	if os.Getenv("CARDSHARE_TEST_SCHTASKS") != "1" {
		t.Skip("opt-in: CARDSHARE_TEST_SCHTASKS=1")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	user := os.Getenv("USERDOMAIN") + `\` + os.Getenv("USERNAME")
	s := Spec{Binary: os.Getenv("SystemRoot") + `\System32\cmd.exe`, WindowsUser: user, Args: []string{"/c", "exit", "0"}}
	p, err := PlanFor("windows", s, Env{LocalAppData: dir})
	if err != nil {
		t.Fatal(err)
	}
	wine := isWine()
	stored := filepath.Join(os.Getenv("SystemRoot"), "System32", "Tasks", WindowsTask)
	exists := func() bool {
		if wine {
			_, err := os.Stat(stored)
			return err == nil
		}
		return ExecRunner(ctx, p.Status) == nil
	}
	if exists() {
		t.Skip("a task named cardshare exists already; not touching it")
	}
	if _, err := Install(ctx, p, ExecRunner); err != nil {
		t.Fatalf("install: %v", err)
	}
	if !exists() {
		t.Error("no task after install")
	}
	if err := Uninstall(ctx, p, ExecRunner); err != nil {
		t.Errorf("uninstall: %v", err)
	}
	if exists() {
		t.Error("the task is still there after uninstall")
	}
	if _, err := os.Stat(p.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("task file left: %v", err)
	}
}
