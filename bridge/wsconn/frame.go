package wsconn

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
)

// WebSocket opcodes and header bits (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA

	finBit  = 0x80
	rsvBits = 0x70
	maskBit = 0x80

	// maxControlPayload is the largest control frame payload.
	maxControlPayload = 125
	// maxFrameHeader is the longest frame header: 2 bytes, a 64-bit
	// length and a masking key.
	maxFrameHeader = 14
)

// protocolError is a frame that breaks RFC 6455: the connection fails with
// 1002, whose reason is Reason. The reasons are gorilla's words for the
// same faults, so logs read the same whichever relay saw them.
type protocolError struct{ Reason string }

func (e *protocolError) Error() string { return "websocket: " + e.Reason }

// frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	op     byte
	masked bool
	key    [4]byte
	length int64
	size   int // bytes of the header itself
}

// isControl reports whether the frame is a close, ping or pong.
func (h *frameHeader) isControl() bool { return h.op&0x8 != 0 }

// parseFrameHeader parses the frame header at the start of p. complete is
// false when p holds only part of it. The checks are those that need no
// state: reserved bits (no extension is negotiated on a frame-relayed
// connection), known opcodes, control frames unfragmented and short, and a
// 64-bit length that fits in 63 bits.
func parseFrameHeader(p []byte) (h frameHeader, complete bool, err error) {
	if len(p) < 2 {
		return h, false, nil
	}
	b0, b1 := p[0], p[1]
	h.fin, h.op, h.masked = b0&finBit != 0, b0&0x0F, b1&maskBit != 0
	h.size = 2
	switch n := b1 & 0x7F; n {
	case 126:
		h.size += 2
	case 127:
		h.size += 8
	default:
		h.length = int64(n)
	}
	if h.masked {
		h.size += 4
	}
	if len(p) < h.size {
		return h, false, nil
	}
	switch b1 & 0x7F {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(p[2:]))
	case 127:
		v := binary.BigEndian.Uint64(p[2:])
		if v>>63 != 0 {
			return h, true, &protocolError{"bad length"}
		}
		h.length = int64(v)
	}
	if h.masked {
		copy(h.key[:], p[h.size-4:h.size])
	}
	switch {
	case b0&rsvBits != 0:
		return h, true, &protocolError{fmt.Sprintf("RSV%d set", 1+bits.LeadingZeros8(b0&rsvBits<<1))}
	case h.op > opBinary && h.op < opClose || h.op > opPong:
		return h, true, &protocolError{fmt.Sprintf("bad opcode %d", h.op)}
	case h.isControl() && !h.fin:
		return h, true, &protocolError{"FIN not set on control"}
	case h.isControl() && h.length > maxControlPayload:
		return h, true, &protocolError{"len > 125 for control"}
	}
	return h, true, nil
}

// appendFrame appends a whole frame with payload to dst, masked with a
// fresh key when mask is set (a client's frames must be masked).
func appendFrame(dst []byte, op byte, payload []byte, mask bool) []byte {
	dst = append(dst, finBit|op)
	b1 := byte(0)
	if mask {
		b1 = maskBit
	}
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, b1|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !mask {
		return append(dst, payload...)
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	maskBytes(key, 0, dst[start:])
	return dst
}

// maskBytes XORs b with the masking key, starting at position pos of the
// payload, and returns the position after b. Masking and unmasking are the
// same operation.
func maskBytes(key [4]byte, pos int, b []byte) int {
	k := binary.LittleEndian.Uint32(key[:])
	k = bits.RotateLeft32(k, -8*(pos&3))
	k64 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= byte(k >> (8 * ((i) & 3)))
	}
	return pos + len(b)
}
