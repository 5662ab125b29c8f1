package ccid

import "time"

// Status is one emulated reader as `cardshare status` shows it.
type Status struct {
	Chardev   string    `json:"chardev"`    // the endpoint, e.g. "unix:/run/vm/ccid.sock"
	QEMU      bool      `json:"qemu"`       // a QEMU is connected and answered the Init
	Reader    string    `json:"reader"`     // the host reader the guest sees; "" if none
	Card      bool      `json:"card"`       // the guest sees a card
	T0ForT1   bool      `json:"t0_for_t1"`  // the card offers only T=1 and is shown with T=0
	APDUs     uint64    `json:"apdus"`      // guest commands answered since Run began
	Since     time.Time `json:"since"`      // when QEMU connected or went away
	LastError string    `json:"last_error"` // why QEMU's last connection ended; "" if none
}

// Status returns every emulated reader's state, in the order of
// Config.Chardevs. It is safe to call while Run runs.
func (b *Bridge) Status() []Status {
	out := make([]Status, len(b.slots))
	for i, s := range b.slots {
		s.mu.Lock()
		out[i] = s.status
		s.mu.Unlock()
		out[i].Chardev = s.conn.ep.String()
	}
	return out
}

// update changes the slot's status under its lock.
func (s *slot) update(f func(*Status)) {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
}
