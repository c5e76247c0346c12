package boltdb

import "syscall"

// umask sets the process umask and returns the previous one (file modes are checked exactly).
func umask(mask int) int { return syscall.Umask(mask) }
