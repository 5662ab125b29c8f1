//go:build !android && !nonative

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

// A PC/SC call waits for the daemon, and a Go goroutine that waits inside
// a C function costs the runtime's system-call machinery on every call:
// the call wakes sysmon, sysmon ticks until it takes the processor from
// the waiting thread and wakes another thread to poll the network (README
// "Why, traced on the quiet machine": 5 to 6 thread sleeps per APDU
// against 2.4 for the socket backend, sysmon a third of the process's
// CPU). Offloaded, the call runs on a thread that has left Go for good:
// it sleeps on a futex between calls and never re-enters the scheduler,
// while the calling goroutine waits for an eventfd in the network poller
// like any socket read. One thread wake-up per call, no sysmon.

const (
	stateIdle uint32 = iota // the thread waits for a call
	stateCall               // a call is posted
	stateDone               // the call returned; ret holds its result
	stateQuit               // the thread leaves offloadLoop and exits
)

// offloadBlock is shared with offloadLoop (offload_linux_amd64.s, which
// has its offsets): plain integers only, so the garbage collector never
// needs to see the C side's writes.
type offloadBlock struct {
	state uint32
	efd   int32
	fn    uintptr
	args  [8]uintptr
	ret   uintptr
}

// offloadLoop is never called from Go: purego calls offloadLoopABI0.
func offloadLoop()

var offloadLoopABI0 uintptr

// offloadThread is one thread in offloadLoop and the eventfd it signals.
type offloadThread struct {
	b    *offloadBlock
	ev   *os.File        // nonblocking, so reads wait in the network poller
	rc   syscall.RawConn // ev's
	wait func(fd uintptr) bool
	one  [8]byte
}

// offloader hands calls to idle threads, starting one when none is idle;
// a call that waits (for a card event, another guest's transaction)
// keeps its thread, as it kept the calling goroutine's thread before.
type offloader struct {
	mu    sync.Mutex
	idle  []*offloadThread
	total int
}

const (
	maxOffloadThreads = 256 // beyond this, calls run on the caller's thread
	maxIdleThreads    = 4   // more idle threads than this exit
)

// offloadCalls returns the function that runs a C call on an offload
// thread, or reports false when it cannot (too many arguments, no thread).
func offloadCalls() func(fn uintptr, args []uintptr) (uintptr, bool) {
	return new(offloader).call
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
	// A raw read inside the poller: a plain Read would take the runtime's
	// system-call path, which wakes sysmon (internal/rawio says more).
	err := t.rc.Read(t.wait)
	for atomic.LoadUint32(&b.state) != stateDone {
		// Only if the eventfd failed: the thread still owns the call's
		// buffers, so wait for it all the same.
		time.Sleep(time.Millisecond)
	}
	r := b.ret
	o.put(t, err == nil)
	return r, true
}

func (o *offloader) get() *offloadThread {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := len(o.idle); n > 0 {
		t := o.idle[n-1]
		o.idle = o.idle[:n-1]
		return t
	}
	if o.total >= maxOffloadThreads {
		return nil
	}
	t, err := startOffloadThread()
	if err != nil {
		return nil
	}
	o.total++
	return t
}

// put returns t to the idle threads, or ends it when there are enough of
// them or it is not ok.
func (o *offloader) put(t *offloadThread, ok bool) {
	o.mu.Lock()
	if ok && len(o.idle) < maxIdleThreads {
		o.idle = append(o.idle, t)
		o.mu.Unlock()
		return
	}
	o.total--
	o.mu.Unlock()
	atomic.StoreUint32(&t.b.state, stateQuit)
	futexWake(&t.b.state)
}

func startOffloadThread() (*offloadThread, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	t := &offloadThread{b: &offloadBlock{efd: int32(fd)}, ev: os.NewFile(uintptr(fd), "scard-offload")}
	if t.rc, err = t.ev.SyscallConn(); err != nil {
		t.ev.Close()
		return nil, err
	}
	t.wait = func(fd uintptr) bool {
		for {
			_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&t.one[0])), uintptr(len(t.one)))
			if e != syscall.EINTR {
				return e != syscall.EAGAIN
			}
		}
	}
	go func() {
		// The thread exits with this goroutine, which never unlocks it.
		runtime.LockOSThread()
		purego.SyscallN(offloadLoopABI0, uintptr(unsafe.Pointer(t.b)))
		runtime.KeepAlive(t.b)
		t.ev.Close()
	}()
	return t, nil
}

func futexWake(addr *uint32) {
	syscall.RawSyscall(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakePrivate, 1)
}

// futexWakePrivate is FUTEX_WAKE | FUTEX_PRIVATE_FLAG (linux/futex.h); the
// waits in offloadLoop use FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 128.
const futexWakePrivate = 1 | 128
