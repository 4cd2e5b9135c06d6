//go:build !unix

package main

import "os"

// holdSignal is the signal that ends an idle run's hold when -hold is 0:
// there is no SIGUSR1 here, so it is an interrupt (Ctrl-C).
func holdSignal() os.Signal { return os.Interrupt }
