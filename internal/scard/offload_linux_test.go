//go:build (amd64 || arm64) && !android && !nonative

package scard

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// libc returns the address of a libc function.
func libc(t testing.TB, name string) uintptr {
	t.Helper()
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Fatal(err)
	}
	fn, err := purego.Dlsym(h, name)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

// The assembly has the offsets as constants.
func TestOffloadLayout(t *testing.T) {
	var b offloadBlock
	got := [...]uintptr{unsafe.Offsetof(b.state), unsafe.Offsetof(b.efd), unsafe.Offsetof(b.fn),
		unsafe.Offsetof(b.args), unsafe.Offsetof(b.ret)}
	if got != [...]uintptr{0, 4, 8, 16, 80} {
		t.Fatalf("offloadBlock offsets %v, offload_linux_*.s have 0 4 8 16 80", got)
	}
}

// Eight arguments: six in registers, two on the stack, and the result.
func TestOffloadArgs(t *testing.T) {
	call := offloadCalls()
	snprintf := libc(t, "snprintf")
	buf := make([]byte, 64)
	format := []byte("%ld %ld %ld %ld %ld|\x00")
	for i := range 3 { // a new thread, then the idle one again
		r, ok := call(snprintf, []uintptr{uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			uintptr(unsafe.Pointer(&format[0])), 4, 5, 6, 7, uintptr(8 + i)})
		want := fmt.Sprintf("4 5 6 7 %d|", 8+i)
		if !ok || int32(r) != int32(len(want)) || string(buf[:len(want)]) != want {
			t.Fatalf("call %d: ok %v, r %d, %q; want %q", i, ok, int32(r), buf[:len(want)], want)
		}
	}
	if _, ok := call(snprintf, make([]uintptr, 9)); ok {
		t.Fatal("a call with 9 arguments was offloaded")
	}
}

// Calls that wait at once each get a thread, up to max, and the others
// wait their turn; idle threads end after idleTime.
func TestOffloadConcurrent(t *testing.T) {
	usleep := libc(t, "usleep")
	fds := openFiles(t)
	o := newOffloader(4, 10*time.Second, 100*time.Millisecond)
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			start := time.Now()
			r, ok := o.call(usleep, []uintptr{20_000})
			if !ok || r != 0 || time.Since(start) < 20*time.Millisecond {
				t.Errorf("usleep: offloaded %v, %d after %v", ok, r, time.Since(start))
			}
			if total, _ := o.threads(); total > 4 {
				t.Errorf("%d threads, max 4", total)
			}
		})
	}
	wg.Wait()
	if total, idle := o.threads(); total != idle || total < 1 || total > 4 {
		t.Errorf("after the calls: %d threads, %d idle; want 1 to 4, all idle", total, idle)
	}
	deadline := time.Now().Add(5 * time.Second)
	for total, _ := o.threads(); total > 0; total, _ = o.threads() {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle threads left 5 s after the calls", total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Each ended thread's goroutine closes its eventfd once offloadLoop
	// has returned.
	for n := openFiles(t); n > fds; n = openFiles(t) {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open after the threads ended, %d before", n, fds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// threads returns how many threads o has, and how many are idle.
func (o *offloader) threads() (total, idle int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total, len(o.idle)
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A call that finds max threads busy for longer than patience says so, and
// its caller makes the call itself: a wait for a thread is bounded.
func TestOffloadPatience(t *testing.T) {
	o := newOffloader(1, 20*time.Millisecond, time.Minute)
	usleep := libc(t, "usleep")
	busy := make(chan bool)
	go func() {
		_, ok := o.call(usleep, []uintptr{300_000})
		busy <- ok
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, ok := o.call(usleep, []uintptr{0}); ok {
		t.Error("offloaded while the only thread was busy")
	}
	if waited := time.Since(start); waited < 20*time.Millisecond || waited > 250*time.Millisecond {
		t.Errorf("gave up after %v, patience 20ms", waited)
	}
	if !<-busy {
		t.Error("the first call was not offloaded")
	}
}

// Calls that hang keep every thread: after one wait has run out, the next
// calls make the plain call at once instead of each waiting patience, and
// they wait again once a thread is back.
func TestOffloadStuck(t *testing.T) {
	o := newOffloader(1, 100*time.Millisecond, time.Minute)
	usleep := libc(t, "usleep")
	hung := make(chan bool)
	go func() {
		_, ok := o.call(usleep, []uintptr{600_000})
		hung <- ok
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, ok := o.call(usleep, []uintptr{0}); ok {
		t.Fatal("offloaded while the only thread hung")
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("the first call gave up after %v, patience 100ms", waited)
	}
	for i := range 3 {
		start = time.Now()
		if _, ok := o.call(usleep, []uintptr{0}); ok {
			t.Fatalf("call %d offloaded while the only thread hung", i)
		}
		if waited := time.Since(start); waited > 50*time.Millisecond {
			t.Fatalf("call %d waited %v for a thread that was known to be stuck", i, waited)
		}
	}
	if !<-hung {
		t.Fatal("the hanging call was not offloaded")
	}
	if _, ok := o.call(usleep, []uintptr{0}); !ok {
		t.Error("not offloaded once the thread was back")
	}
}

// BenchmarkOffloadHop is the round trip to an offload thread and back
// (a call of getpid), against calling the function directly.
func BenchmarkOffloadHop(b *testing.B) {
	getpid := libc(b, "getpid")
	call := offloadCalls()
	b.Run("offload", func(b *testing.B) {
		for b.Loop() {
			call(getpid, nil)
		}
	})
	b.Run("purego", func(b *testing.B) {
		for b.Loop() {
			purego.SyscallN(getpid)
		}
	})
}
