package main

import (
	"os"
	"strings"
	"sync"

	"github.com/ggcore/ggcore/tpm"
)

// tpmWarmup opens a TPM (on a gateway, the default /dev/tpmrm0) while the core still waits
// for its data partition and reads its config, so that the keys' store
// finds the connection open (its SRK read) when its first key loads. On an
// emulated gateway this takes tens of milliseconds off the start, on the
// way to `ggcore ready`.
//
// It is only a head start: a config that names another TPM, or keys with
// none, leave the connection unused and it is closed; a failed open is
// the store's error, reported as if the store had opened the TPM itself.
// Through the kernel's resource manager the connection has a space of
// its own, so opening it early disturbs no other user of the TPM.
type tpmWarmup struct {
	device string
	done   chan struct{} // closed once the open has ended

	mu  sync.Mutex // guards what follows once done is closed
	tpm *tpm.TPM
	err error
}

// warmTPM starts opening the TPM at device (ggcore.tpm.device's syntax);
// nil if device is a device node that does not exist (a gateway without
// a TPM, whose keys are in files or a token).
func warmTPM(device string) *tpmWarmup {
	if strings.HasPrefix(device, "/") {
		if _, err := os.Stat(device); err != nil {
			return nil
		}
	}
	w := &tpmWarmup{device: device, done: make(chan struct{})}
	go func() {
		t, err := tpm.Open(device)
		w.mu.Lock()
		w.tpm, w.err = t, err
		w.mu.Unlock()
		close(w.done)
	}()
	return w
}

// open is the keys store's OpenTPM: the connection warmTPM opened when it
// is for device, else a new one. It hands the warm connection over once.
func (w *tpmWarmup) open(device string) (*tpm.TPM, error) {
	if w != nil && device == w.device {
		<-w.done
		w.mu.Lock()
		t, err := w.tpm, w.err
		w.tpm, w.err = nil, nil
		w.mu.Unlock()
		if t != nil || err != nil {
			return t, err
		}
	}
	return tpm.Open(device)
}

// close closes the warm connection if nobody took it.
func (w *tpmWarmup) close() {
	if w == nil {
		return
	}
	<-w.done
	w.mu.Lock()
	t := w.tpm
	w.tpm, w.err = nil, nil
	w.mu.Unlock()
	if t != nil {
		t.Close()
	}
}
