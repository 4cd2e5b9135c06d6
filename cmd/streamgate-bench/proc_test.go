package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestProcTreeCountsChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	res, err := procTree("/proc", os.Getpid(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.PIDs, os.Getpid()) || !slices.Contains(res.PIDs, cmd.Process.Pid) {
		t.Errorf("pids %v lack this process %d or its child %d", res.PIDs, os.Getpid(), cmd.Process.Pid)
	}
	if res.RSSKiB <= 0 {
		t.Errorf("rss: got %d KiB", res.RSSKiB)
	}
}

func TestReadStatCommandWithSpacesAndParens(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	// comm "a) b (c" would fool a parser splitting on spaces or the first ')'.
	stat := "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 150 50 3 2 20 0 1 0 1000 100000 200\n"
	if err := os.WriteFile(filepath.Join(dir, "42", "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := readStat(dir, 42)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 7 || st.ticks != 150+50+3+2 {
		t.Errorf("got ppid %d, ticks %d; want 7, 205", st.ppid, st.ticks)
	}
}

func TestProcTreeMissingProcess(t *testing.T) {
	if _, err := procTree(t.TempDir(), 42, 100); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
