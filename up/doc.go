// Package up is the supervisor behind `cardshare up`: it runs one
// forward.Forwarder per guest of the config file, and on Reload applies a
// changed file guest by guest (guests whose settings did not change keep
// their connections; a file with an error changes nothing). [Supervisor.Status]
// is the status document of the control socket. It returns errors and
// reports through callbacks; cmd/cardshare prints.
//
// up is the SSH mode's service: it may import forward and config, never
// relay or cmd.
package up
