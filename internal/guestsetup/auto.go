package guestsetup

import (
	"context"
	"sync"
	"time"

	"github.com/cardshare/cardshare/internal/sshdial"
)

// Auto runs Setup for each guest whose forward comes up, once per guest and
// socket path, for `expose --setup-guest` and setup_guest in the config
// file. A setup that fails is tried again when the guest's forward next
// comes up. The methods of a nil *Auto do nothing.
type Auto struct {
	ctx     context.Context
	targets map[string]sshdial.Target
	dial    sshdial.DialOptions
	report  func(guest, socket string, res Result, err error)

	mu   sync.Mutex
	done map[string]string // guest -> socket it was set up for
	wg   sync.WaitGroup
}

// NewAuto returns an Auto for the guests in targets, by name. report is
// called with each setup's result, one call at a time; it is not called
// for a setup that failed because ctx ended.
func NewAuto(ctx context.Context, targets map[string]sshdial.Target, dial sshdial.DialOptions, report func(guest, socket string, res Result, err error)) *Auto {
	return &Auto{ctx: ctx, targets: targets, dial: dial, report: report, done: map[string]string{}}
}

// Up says that guest's forward is up on socket. It does not block.
func (a *Auto) Up(guest, socket string) {
	if a == nil || socket == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.targets[guest]
	if !ok || a.done[guest] == socket {
		return
	}
	a.done[guest] = socket
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
		defer cancel()
		res, err := setupAt(ctx, t, a.dial, socket)
		a.mu.Lock()
		defer a.mu.Unlock()
		if err != nil {
			if a.ctx.Err() != nil {
				return
			}
			delete(a.done, guest) // try again at the next reconnect
		}
		a.report(guest, socket, res, err)
	}()
}

// Wait waits for the setups that have started.
func (a *Auto) Wait() {
	if a != nil {
		a.wg.Wait()
	}
}

func setupAt(ctx context.Context, t sshdial.Target, dial sshdial.DialOptions, socket string) (Result, error) {
	c, err := sshdial.Dial(ctx, t, dial)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	return Setup(ctx, c, Options{Socket: socket})
}
