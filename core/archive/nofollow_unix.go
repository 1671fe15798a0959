//go:build unix

package archive

import "syscall"

// noFollow refuses to open a file through a symbolic link.
const noFollow = syscall.O_NOFOLLOW
