package main

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// openTerminal opens a pseudo-terminal and returns its terminal side, to
// write to, and its controller side, to read what was written; it skips the
// test where there is no /dev/ptmx.
func openTerminal(t *testing.T) (w, r *os.File) {
	t.Helper()
	r, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	fd := int(r.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		r.Close()
		t.Skipf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		r.Close()
		t.Skipf("naming the pseudo-terminal: %v", err)
	}
	w, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		r.Close()
		t.Skipf("opening the pseudo-terminal: %v", err)
	}
	return w, r
}
