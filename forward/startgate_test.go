package forward

import (
	"context"
	"testing"
	"time"
)

// The gate lets n guests in at once, gives a slot back on leave (once,
// however often leave is called) or after its hold, and lets a waiting
// guest go when its context ends. A nil gate lets everyone in.
func TestStartGate(t *testing.T) {
	ctx := t.Context()
	g := NewStartGate(2, time.Hour)
	l1, err := g.enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l2, _ := g.enter(ctx)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := g.enter(short); err == nil {
		t.Fatal("a third guest entered a gate of 2")
	}
	l1()
	l1() // a second leave gives nothing more back
	l3, err := g.enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if _, err := g.enter(short2); err == nil {
		t.Fatal("a repeated leave gave back a second slot")
	}
	l2()
	l3()

	// A guest that holds its slot too long loses it.
	h := NewStartGate(1, 20*time.Millisecond)
	if _, err := h.enter(ctx); err != nil {
		t.Fatal(err)
	}
	wait, cancel3 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel3()
	if _, err := h.enter(wait); err != nil {
		t.Fatalf("the slot did not come back after the hold: %v", err)
	}

	var none *StartGate
	for range 100 {
		if _, err := none.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// quiet returns at once on a gate nobody is in, waits while a guest holds
// a slot, and gives up after its max.
func TestStartGateQuiet(t *testing.T) {
	ctx := t.Context()
	g := NewStartGate(2, time.Hour)
	start := time.Now()
	g.quiet(ctx, time.Hour)
	var none *StartGate
	none.quiet(ctx, time.Hour)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("quiet on an empty gate took %v", d)
	}
	leave, _ := g.enter(ctx)
	start = time.Now()
	g.quiet(ctx, 200*time.Millisecond)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("quiet returned after %v while a slot was held", d)
	}
	time.AfterFunc(100*time.Millisecond, leave)
	start = time.Now()
	g.quiet(ctx, time.Hour)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("quiet took %v after the slot was left", d)
	}
}
