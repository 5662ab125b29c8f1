//go:build !android && !nonative

#include "textflag.h"

// Offsets in offloadBlock (offload_linux.go; TestOffloadLayout).
#define B_STATE 0
#define B_EFD 4
#define B_FN 8
#define B_ARGS 16
#define B_RET 80

// offloadLoopABI0 is the address of offloadLoop's ABI0 entry: the code
// purego calls as a C function.
GLOBL ·offloadLoopABI0(SB), NOPTR|RODATA, $8
DATA ·offloadLoopABI0(SB)/8, $·offloadLoop(SB)

// offloadLoop(b *offloadBlock) runs as a C function (System V AMD64: b in
// DI), on the system stack of the thread that purego's call entered it
// on, and returns only when b's state is stateQuit. Until then it waits
// on the futex b.state while it is neither stateCall nor stateQuit; on
// stateCall it calls b.fn(b.args[0..7]) with the C calling convention,
// stores the result in b.ret, sets stateDone and adds 1 to the eventfd
// b.efd. It touches no Go state and makes no Go call, so the runtime
// never sees it: to Go, the thread is in one long C call.
//
// The frame: 0 and 8 are the call's 7th and 8th arguments, 16 saves BX
// (callee-saved), 24 holds the eventfd's 8-byte increment. The assembler
// adds the saved BP, so that SP is 16-byte aligned at the CALL.
TEXT ·offloadLoop(SB), NOSPLIT, $32-0
	MOVQ BX, 16(SP)
	MOVQ DI, BX

wait:
	MOVL B_STATE(BX), AX
	CMPL AX, $1 // stateCall
	JEQ  call
	CMPL AX, $3 // stateQuit
	JEQ  quit

	// futex(&b.state, FUTEX_WAIT_PRIVATE, state, NULL): returns at once
	// if the state changed since it was read.
	MOVQ BX, DI
	MOVL $128, SI
	MOVL AX, DX
	XORQ R10, R10
	MOVL $202, AX // SYS_futex
	SYSCALL
	JMP  wait

call:
	MOVQ (B_ARGS+48)(BX), AX
	MOVQ AX, 0(SP)
	MOVQ (B_ARGS+56)(BX), AX
	MOVQ AX, 8(SP)
	MOVQ (B_ARGS+0)(BX), DI
	MOVQ (B_ARGS+8)(BX), SI
	MOVQ (B_ARGS+16)(BX), DX
	MOVQ (B_ARGS+24)(BX), CX
	MOVQ (B_ARGS+32)(BX), R8
	MOVQ (B_ARGS+40)(BX), R9
	MOVQ B_FN(BX), R11
	XORL AX, AX // no vector registers, should fn be variadic
	CALL R11
	MOVQ AX, B_RET(BX)
	MOVL $2, AX // stateDone
	XCHGL AX, B_STATE(BX)

	// write(b.efd, &1, 8)
	MOVQ $1, 24(SP)
	MOVLQSX B_EFD(BX), DI
	LEAQ 24(SP), SI
	MOVL $8, DX
	MOVL $1, AX // SYS_write
	SYSCALL
	JMP  wait

quit:
	MOVQ 16(SP), BX
	XORL AX, AX
	RET
