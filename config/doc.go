// Package config reads and checks cardshare's configuration file: the host
// options and the guests that `cardshare up` keeps exposed.
//
// The file is YAML, read strictly: an unknown key, a repeated key or guest,
// a value of the wrong type, a bad duration or a relative path is an error
// that names the file and line, says what is wrong and how to fix it
// (*Error). Load reads the file, Parse reads bytes, and Validate checks a
// Config built in code the same way. DefaultPath is where the file lives
// when no --config is given.
//
// A complete file:
//
//	version: 1                        # optional; the format version
//	host:
//	  backend: auto                   # auto, socket or native
//	  pcscd_socket: /run/pcscd/pcscd.comm
//	  keepalive: 5s
//	  log_level: info                 # debug, info, warn or error
//	  log_format: text                # text or json
//	  ssh_config: ~/.ssh/config       # like ssh -F
//	  accept_new: false               # record unknown host keys
//	  max_guest_conns: 32             # pcscd connections of one guest
//	  max_conns: 150                  # ... of all guests together
//	guests:
//	  - name: devvm
//	    destination: dev@127.0.0.1:2222   # ssh_config alias or [user@]host[:port]
//	    socket: /run/user/1000/cardshare/pcscd.comm
//	    setup_guest: true
//	  - vm: build                         # a VM name instead of a destination
//	    readers: ["Yubico YubiKey*"]      # the readers the guest sees
//	    control: deny                     # no SCardControl
//	    audit: true                       # one log line per PC/SC call
//	  - vm: win11                         # a libvirt domain, without guest software:
//	    ccid:                             # QEMU's emulated USB CCID reader (CCID)
//	      reader: "Yubico*"               # host readers to pass (required)
//	      chardev: [unix:/run/vm/ccid0.sock]  # default: the domain's smartcards
//	      listen: false
//	      exclusive: false
//	      t1: false
//
// The reader policy keys (readers, control, audit) apply to every
// connection of the guest (package relay). Warnings reports reader
// patterns that cannot match. A guest with ccid: takes none of the SSH
// keys (destination, socket, setup_guest, readers, control, audit).
package config
