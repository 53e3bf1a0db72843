// Package earlysignal catches SIGTERM and SIGINT from the moment it is
// initialized, which is as early as a Go program can: it imports only
// what os/signal needs, so the runtime initializes it right after
// os/signal, before the packages of the program's large dependencies
// (client-go's schemes alone take milliseconds). A signal that arrives
// before main runs is kept, not lost: Context is done at once.
//
// Before its init, a SIGTERM kills a Go program, as it kills any program
// that has not installed a handler yet; TestInstallerTerminatedAnywhere
// measures how long that window is.
package earlysignal

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

var caught = make(chan os.Signal, 1)

func init() {
	signal.Notify(caught, syscall.SIGTERM, os.Interrupt)
}

// Context returns a context that is done once SIGTERM or SIGINT arrived,
// since the program's start. stop stops catching them: a second signal
// then kills the program.
func Context() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		select {
		case <-caught:
			cancel()
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		signal.Stop(caught)
		cancel()
	}
}
