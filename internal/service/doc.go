// Package service writes the systemd user unit that runs `cardshare up`
// ([UnitFile], [Write]), removes it ([Remove]) and drives `systemctl --user`
// ([Systemctl]), for `cardshare service install` and `uninstall`;
// cmd/cardshare checks the config file and prints.
//
// service must not import forward, relay, config or cmd.
package service
