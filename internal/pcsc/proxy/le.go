package proxy

import "encoding/binary"

// le is the byte order of the wire: host order, and cardshare supports
// little-endian peers (see package pcsc).
var le = binary.LittleEndian
