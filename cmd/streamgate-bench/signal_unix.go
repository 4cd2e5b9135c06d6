//go:build unix

package main

import (
	"os"
	"syscall"
)

// holdSignal is the signal that ends an idle run's hold when -hold is 0.
func holdSignal() os.Signal { return syscall.SIGUSR1 }
