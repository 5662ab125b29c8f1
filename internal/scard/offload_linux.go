//go:build (amd64 || arm64) && !android && !nonative

package scard

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"
)

// Offloading. A PC/SC call waits for the daemon, and a goroutine that
// waits inside a C function pays the runtime's system-call machinery on
// every call: the call wakes sysmon, and sysmon ticks until it takes the
// processor from the waiting thread and wakes another thread to poll the
// network (docs/benchmarks.md, "The native backend (issue 14)": 6 thread
// sleeps per APDU against 2.4 for the socket backend, sysmon a third of
// the process's CPU). Offloaded, the call runs on a thread that has left Go for good
// (offloadLoop, in assembly): between calls it sleeps on a futex, and the
// calling goroutine waits for the answer on an eventfd in the network
// poller, like any socket read, while the processor stays free for the
// rest of the process. Per call that is one wake-up of the thread and no
// sysmon. A call that waits long (a card event, another guest's
// transaction) keeps its thread, as it kept the caller's thread before.

// The states of offloadBlock.state.
const (
	stateIdle uint32 = iota // the thread waits for a call
	stateCall               // a call is posted
	stateDone               // the call returned; ret holds its result
	stateQuit               // offloadLoop returns and the thread exits
)

// offloadBlock is shared with offloadLoop (offload_linux_*.s have its
// offsets): plain integers only, so the garbage collector never needs to
// see the other thread's writes. state orders them: the caller writes fn
// and args before stateCall, the thread ret before stateDone.
type offloadBlock struct {
	state uint32
	efd   int32 // the eventfd the thread adds 1 to after each call
	fn    uintptr
	args  [8]uintptr
	ret   uintptr
}

// offloadLoop is never called from Go: purego calls offloadLoopABI0.
//
//lint:ignore U1000 the assembly's entry, declared for go vet's asmdecl
func offloadLoop()

// offloadLoopABI0 is offloadLoop's entry, set by the assembly.
var offloadLoopABI0 uintptr

// offloadThread is one thread in offloadLoop.
type offloadThread struct {
	b    *offloadBlock
	used time.Time // when it last became idle
	ev   *os.File  // the eventfd, non-blocking: reads wait in the poller
	rc   syscall.RawConn
	wait func(fd uintptr) bool // made once: a call allocates nothing
	one  [8]byte
}

// offloader hands calls to idle threads and starts one when none is.
type offloader struct {
	max      int           // threads at most
	patience time.Duration // how long a call waits for a thread when max are busy
	idleTime time.Duration // an idle thread exits after this

	mu       sync.Mutex
	idle     []*offloadThread // the least recently used first
	total    int
	trimming bool
	stuck    bool          // a wait ran out, and no thread has come back since
	freed    chan struct{} // a token each time a thread becomes idle
}

// The pool: a burst of calls (100 guests at once, scripts/scale.sh -B
// native) waits for one of maxOffloadThreads threads, instead of holding a
// thread each in libpcsclite as plain calls do (30 to 98 threads and up to
// 57 MB there; 14-15 threads and 48 MB so). A call that has waited
// offloadPatience makes the plain call instead: libpcsclite retries
// Transmit, Status, Reconnect and BeginTransaction while another context
// holds a transaction (every 100 ms, PCSCLITE_LOCK_POLL_RATE), so every
// thread could be waiting for an EndTransaction queued behind them, and a
// bounded wait is what keeps that from a deadlock. With 50 ms a burst
// still fell back now and then (52 threads in one run of two).
const (
	maxOffloadThreads = 8
	offloadPatience   = 200 * time.Millisecond
)

// offloadCalls returns the function that runs a C call on an offload
// thread and reports false when it cannot (more than 8 arguments, a
// thread could not start, or none came free within offloadPatience, see
// get): the caller then makes the call itself.
func offloadCalls() func(fn uintptr, args []uintptr) (uintptr, bool) {
	return newOffloader(maxOffloadThreads, offloadPatience, 10*time.Second).call
}

func newOffloader(max int, patience, idleTime time.Duration) *offloader {
	return &offloader{max: max, patience: patience, idleTime: idleTime, freed: make(chan struct{}, 1)}
}

func (o *offloader) call(fn uintptr, args []uintptr) (uintptr, bool) {
	if len(args) > len(offloadBlock{}.args) {
		return 0, false
	}
	t := o.get()
	if t == nil {
		return 0, false
	}
	b := t.b
	b.fn = fn
	clear(b.args[copy(b.args[:], args):])
	atomic.StoreUint32(&b.state, stateCall)
	futexWake(&b.state)
	// A raw read inside the poller: os.File's Read would take the
	// runtime's system-call path, which wakes sysmon (see internal/rawio).
	err := t.rc.Read(t.wait)
	for atomic.LoadUint32(&b.state) != stateDone {
		// Only if the eventfd failed, which nothing here makes happen:
		// the thread still owns the call's buffers, so wait for it.
		time.Sleep(time.Millisecond)
	}
	r := b.ret
	o.put(t, err == nil)
	return r, true
}

// get returns an idle thread, the most recently used, or a new one; when
// max are busy it waits up to patience for one. nil: none.
//
// Once a wait has run out, calls stop waiting until a thread comes back:
// calls that hang in libpcsclite (a guest's Transmit on a card another of
// its connections holds in a transaction) may keep all max threads, and
// the other guests' calls must not each pay patience meanwhile.
func (o *offloader) get() *offloadThread {
	if t := o.take(); t != nil || o.patience <= 0 || o.isStuck() {
		return t
	}
	timer := time.NewTimer(o.patience)
	defer timer.Stop()
	for {
		select {
		case <-o.freed:
			if t := o.take(); t != nil {
				return t
			}
		case <-timer.C:
			o.mu.Lock()
			defer o.mu.Unlock()
			t := o.takeLocked()
			o.stuck = t == nil
			return t
		}
	}
}

func (o *offloader) isStuck() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stuck
}

// take returns an idle thread or a new one, or nil when max are busy or
// one cannot start.
func (o *offloader) take() *offloadThread {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.takeLocked()
}

func (o *offloader) takeLocked() *offloadThread {
	if n := len(o.idle); n > 0 {
		t := o.idle[n-1]
		o.idle = o.idle[:n-1]
		if n > 1 {
			o.signal() // another waiter may take the next one
		}
		return t
	}
	if o.total >= o.max {
		return nil
	}
	t, err := startOffloadThread()
	if err != nil {
		return nil
	}
	o.total++
	return t
}

// put makes t idle again, or ends it if its eventfd failed. Idle threads
// stay for idleTime, so that many calls at once do not start and end a
// thread each.
func (o *offloader) put(t *offloadThread, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	defer o.signal()
	o.stuck = false
	if !ok {
		o.total--
		t.quit()
		return
	}
	t.used = time.Now()
	o.idle = append(o.idle, t)
	if !o.trimming {
		o.trimming = true
		time.AfterFunc(o.idleTime, o.trim)
	}
}

// trim ends the threads idle for idleTime, and comes back while any is
// idle.
func (o *offloader) trim() {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for n < len(o.idle) && time.Since(o.idle[n].used) >= o.idleTime {
		o.idle[n].quit()
		n++
	}
	o.total -= n
	o.idle = append(o.idle[:0], o.idle[n:]...)
	o.trimming = len(o.idle) > 0
	if o.trimming {
		time.AfterFunc(o.idleTime-time.Since(o.idle[0].used), o.trim)
	}
}

// signal wakes one call waiting in get, if any; a token left unread
// makes the next wait try again at once.
func (o *offloader) signal() {
	select {
	case o.freed <- struct{}{}:
	default: // a token is there already
	}
}

// quit makes offloadLoop return: the thread exits.
func (t *offloadThread) quit() {
	atomic.StoreUint32(&t.b.state, stateQuit)
	futexWake(&t.b.state)
}

func startOffloadThread() (*offloadThread, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	t := &offloadThread{b: &offloadBlock{efd: int32(fd)}, ev: os.NewFile(uintptr(fd), "scard-offload")}
	if t.rc, err = t.ev.SyscallConn(); err != nil {
		t.ev.Close()
		return nil, err
	}
	t.wait = t.readDone
	go func() {
		// The thread exits with this goroutine, which never unlocks it.
		runtime.LockOSThread()
		purego.SyscallN(offloadLoopABI0, uintptr(unsafe.Pointer(t.b)))
		t.ev.Close()
	}()
	return t, nil
}

// readDone reads the eventfd once the thread says done; false means wait.
// Before that the eventfd cannot be readable and a read would only cost a
// system call; the poller is edge-triggered, so it sees a write made after
// its wait began, and one made before is seen here as stateDone.
func (t *offloadThread) readDone(fd uintptr) bool {
	if atomic.LoadUint32(&t.b.state) != stateDone {
		return false
	}
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&t.one[0])), uintptr(len(t.one)))
		if e != syscall.EINTR {
			return e != syscall.EAGAIN
		}
	}
}

// futexWakePrivate is FUTEX_WAKE | FUTEX_PRIVATE_FLAG (linux/futex.h);
// offloadLoop waits with FUTEX_WAIT | FUTEX_PRIVATE_FLAG.
const futexWakePrivate = 1 | 128

func futexWake(addr *uint32) {
	syscall.RawSyscall(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakePrivate, 1)
}
