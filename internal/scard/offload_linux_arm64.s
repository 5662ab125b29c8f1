//go:build !android && !nonative

#include "textflag.h"

// Offsets in offloadBlock (offload_linux.go; TestOffloadLayout).
#define B_STATE 0
#define B_EFD 4
#define B_FN 8
#define B_ARGS 16
#define B_RET 80

// offloadLoopABI0 is the address of offloadLoop's entry: the code purego
// calls as a C function.
GLOBL ·offloadLoopABI0(SB), NOPTR|RODATA, $8
DATA ·offloadLoopABI0(SB)/8, $·offloadLoop(SB)

// offloadLoop(b *offloadBlock) runs as a C function (AAPCS64: b in R0) and
// does what offload_linux_amd64.s describes: wait on the futex b.state,
// call b.fn(b.args[0..7]) (all eight in R0-R7), store b.ret, set
// stateDone, add 1 to the eventfd b.efd; return on stateQuit.
//
// No frame from the assembler: the code saves what the C convention asks
// it to keep (R19, which holds b; R29 and R30) and R27, which the
// assembler may use as a temporary. 32(RSP) holds the eventfd's 8-byte
// increment; RSP stays 16-byte aligned.
TEXT ·offloadLoop(SB), NOSPLIT|NOFRAME, $0-0
	SUB	$48, RSP
	MOVD	R19, 0(RSP)
	MOVD	R27, 8(RSP)
	MOVD	R29, 16(RSP)
	MOVD	R30, 24(RSP)
	MOVD	R0, R19

wait:
	LDARW	(R19), R2
	CMPW	$1, R2 // stateCall
	BEQ	call
	CMPW	$3, R2 // stateQuit
	BEQ	quit

	// futex(&b.state, FUTEX_WAIT_PRIVATE, state, NULL): returns at once
	// if the state changed since it was read.
	MOVD	R19, R0
	MOVD	$128, R1
	MOVD	$0, R3
	MOVD	$98, R8 // SYS_futex
	SVC
	B	wait

call:
	MOVD	(B_ARGS+0)(R19), R0
	MOVD	(B_ARGS+8)(R19), R1
	MOVD	(B_ARGS+16)(R19), R2
	MOVD	(B_ARGS+24)(R19), R3
	MOVD	(B_ARGS+32)(R19), R4
	MOVD	(B_ARGS+40)(R19), R5
	MOVD	(B_ARGS+48)(R19), R6
	MOVD	(B_ARGS+56)(R19), R7
	MOVD	B_FN(R19), R9
	BL	(R9)
	MOVD	R0, B_RET(R19)
	MOVW	$2, R1 // stateDone
	STLRW	R1, (R19)

	// write(b.efd, &1, 8)
	MOVD	$1, R1
	MOVD	R1, 32(RSP)
	MOVW	B_EFD(R19), R0
	ADD	$32, RSP, R1
	MOVD	$8, R2
	MOVD	$64, R8 // SYS_write
	SVC
	B	wait

quit:
	MOVD	0(RSP), R19
	MOVD	8(RSP), R27
	MOVD	16(RSP), R29
	MOVD	24(RSP), R30
	ADD	$48, RSP
	MOVD	$0, R0
	RET
