/*
 * guestclient: the PC/SC client that scripts/qemu-ccid.sh runs inside the
 * QEMU guest, against the guest's own pcscd and libccid (the emulated
 * usb-ccid reader). It is built on the host (Debian 12, like the guest) and
 * copied onto the guest's test disk. It speaks T=0 the way T=0 middleware
 * does: a 61xx answer is followed by GET RESPONSE.
 *
 * usage: guestclient READER-SUBSTRING MODE [ARG]
 *   hello          print "protocol: T=x", "atr: ..", then SELECT the
 *                  hello-world applet, send 00 00 00 00 and print
 *                  "response: TEXT sw: XXXX"
 *   bench N        N round trips of 00 00 00 00; one line of statistics
 *   cmd LEN        send a command APDU of LEN bytes (case 3, extended Lc
 *                  beyond 260) and print "cmd LEN: ok sw XXXX" or the error
 *   resp N         INS B0 with P2 = N/8: the test card answers N bytes;
 *                  print "resp N: got M bytes sw XXXX" after GET RESPONSEs
 *   status N       N SCardStatus calls, which pcscd answers without the
 *                  reader: the guest's own PC/SC cost, without USB
 *   reset          print "guest: reset the card now", wait 4 s (the host
 *                  resets the card meanwhile), send 00 00 00 00: it must fail;
 *                  connect again and say hello
 *   waitremove S   wait up to S seconds for the card to go; print "removed"
 * Exit status 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <winscard.h>

static SCARDCONTEXT ctx;
static SCARDHANDLE card;
static const SCARD_IO_REQUEST *pci;
static char reader[512];
static BYTE resp[70000];

static int fail(const char *what, LONG rv)
{
	printf("guestclient: %s: %s (0x%08lX)\n", what, pcsc_stringify_error(rv), (unsigned long)rv);
	return 1;
}

static unsigned sw(const BYTE *r, DWORD n) { return n < 2 ? 0 : (unsigned)r[n - 2] << 8 | r[n - 1]; }

/* xmit sends an APDU; on 61xx it fetches the rest with GET RESPONSE and
 * returns the whole response in resp. */
static LONG xmit(const BYTE *apdu, DWORD n, DWORD *len)
{
	DWORD got = 0, l;
	BYTE get[5] = {0x00, 0xC0, 0x00, 0x00, 0x00};
	LONG rv;

	l = sizeof resp;
	rv = SCardTransmit(card, pci, apdu, n, NULL, resp, &l);
	while (rv == SCARD_S_SUCCESS && l >= 2 && resp[got + l - 2] == 0x61) {
		got += l - 2;
		get[4] = resp[got + 1];
		l = sizeof resp - got;
		rv = SCardTransmit(card, pci, get, 5, NULL, resp + got, &l);
	}
	*len = got + l;
	return rv;
}

static const BYTE select_apdu[] = {0x00, 0xA4, 0x04, 0x00, 0x0A, 0xA0, 0x00, 0x00, 0x00, 0x62,
	0x03, 0x01, 0x0C, 0x06, 0x01};
static const BYTE hello_apdu[] = {0x00, 0x00, 0x00, 0x00};

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

static int hello(int print)
{
	DWORD len, i;
	LONG rv = xmit(select_apdu, sizeof select_apdu, &len);
	if (rv != SCARD_S_SUCCESS)
		return fail("SELECT", rv);
	rv = xmit(hello_apdu, sizeof hello_apdu, &len);
	if (rv != SCARD_S_SUCCESS)
		return fail("hello", rv);
	if (print) {
		printf("response: ");
		for (i = 0; i + 2 < len; i++)
			putchar(resp[i] >= 0x20 && resp[i] < 0x7F ? resp[i] : '.');
		printf(" sw: %04X\n", sw(resp, len));
	}
	return sw(resp, len) == 0x9000 && len == 14 ? 0 : 1;
}

static int bench(long n)
{
	long long *lat = calloc(n, sizeof *lat), start, total;
	long i, over10 = 0;
	DWORD len;

	if (lat == NULL || hello(0) != 0)
		return 1;
	start = now_ns();
	for (i = 0; i < n; i++) {
		long long t0 = now_ns();
		LONG rv = xmit(hello_apdu, sizeof hello_apdu, &len);
		lat[i] = now_ns() - t0;
		if (rv != SCARD_S_SUCCESS)
			return fail("bench", rv);
		if (sw(resp, len) != 0x9000)
			return 1;
		if (lat[i] > 10000000LL)
			over10++;
	}
	total = now_ns() - start;
	qsort(lat, n, sizeof *lat, cmp);
	printf("bench: count=%ld median_us=%.1f p99_us=%.1f max_us=%.1f apdu_per_s=%.0f over_10ms=%ld\n",
		n, lat[(n - 1) / 2] / 1e3, lat[(n * 99 + 99) / 100 - 1] / 1e3, lat[n - 1] / 1e3,
		n / (total / 1e9), over10);
	return 0;
}

static int cmd(long n)
{
	static BYTE apdu[70000];
	DWORD len, l = sizeof resp;
	LONG rv;

	if (n < 5 || n > (long)sizeof apdu)
		return 1;
	memset(apdu, 0x5A, n);
	apdu[0] = 0x00, apdu[1] = 0xD6, apdu[2] = 0, apdu[3] = 0;
	if (n <= 260) {
		apdu[4] = n - 5;
	} else {
		apdu[4] = 0, apdu[5] = (n - 7) >> 8, apdu[6] = (n - 7) & 0xFF;
	}
	rv = SCardTransmit(card, pci, apdu, n, NULL, resp, &l);
	len = l;
	if (rv != SCARD_S_SUCCESS) {
		printf("cmd %ld: ", n);
		return fail("transmit", rv);
	}
	printf("cmd %ld: ok sw %04X\n", n, sw(resp, len));
	return 0;
}

static int respn(long n)
{
	BYTE apdu[5] = {0x00, 0xB0, 0x00, (BYTE)(n / 8), 0x00};
	DWORD len;
	LONG rv = xmit(apdu, sizeof apdu, &len);
	if (rv != SCARD_S_SUCCESS) {
		printf("resp %ld: ", n);
		return fail("transmit", rv);
	}
	printf("resp %ld: got %lu bytes sw %04X\n", n, (unsigned long)len - 2, sw(resp, len));
	return len - 2 == (DWORD)(n / 8 * 8) ? 0 : 1;
}

static int status(long n)
{
	char name[512];
	BYTE atr[64];
	DWORD nl, st, pr, al;
	long long start = now_ns(), t, max = 0;
	long i;

	for (i = 0; i < n; i++) {
		long long t0 = now_ns();
		nl = sizeof name, al = sizeof atr;
		LONG rv = SCardStatus(card, name, &nl, &st, &pr, atr, &al);
		if (rv != SCARD_S_SUCCESS)
			return fail("SCardStatus", rv);
		t = now_ns() - t0;
		if (t > max)
			max = t;
	}
	t = now_ns() - start;
	printf("status: count=%ld mean_us=%.1f max_us=%.1f\n", n, t / 1e3 / n, max / 1e3);
	return 0;
}

static int reset(void)
{
	DWORD len, proto;
	LONG rv;
	int i;

	if (hello(0) != 0)
		return 1;
	printf("guest: reset the card now\n");
	fflush(stdout);
	sleep(4);
	rv = xmit(hello_apdu, sizeof hello_apdu, &len);
	if (rv == SCARD_S_SUCCESS) {
		printf("after reset: answered sw %04X (must not be)\n", sw(resp, len));
		return 1;
	}
	printf("after reset: %s (0x%08lX)\n", pcsc_stringify_error(rv), (unsigned long)rv);
	SCardDisconnect(card, SCARD_LEAVE_CARD);
	for (i = 0; i < 20; i++) {
		rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &proto);
		if (rv == SCARD_S_SUCCESS)
			break;
		sleep(1);
	}
	if (rv != SCARD_S_SUCCESS)
		return fail("SCardConnect after reset", rv);
	printf("after reset, connected again: ");
	return hello(1);
}

static int waitremove(long seconds)
{
	SCARD_READERSTATE rs = {.szReader = reader, .dwCurrentState = SCARD_STATE_PRESENT};
	long long end = now_ns() + seconds * 1000000000LL;
	while (now_ns() < end) {
		LONG rv = SCardGetStatusChange(ctx, 1000, &rs, 1);
		if (rv == SCARD_S_SUCCESS && (rs.dwEventState & SCARD_STATE_EMPTY)) {
			printf("removed: %s\n", reader);
			return 0;
		}
		rs.dwCurrentState = rs.dwEventState & ~SCARD_STATE_CHANGED;
	}
	printf("guestclient: card not removed in %ld s\n", seconds);
	return 1;
}

int main(int argc, char **argv)
{
	char names[4096], *p;
	DWORD n = sizeof names, proto, atrlen = 64, state, rlen = sizeof reader;
	BYTE atr[64];
	LONG rv;
	int i;

	if (argc < 3)
		return 2;
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (rv != SCARD_S_SUCCESS)
		return fail("SCardEstablishContext", rv);
	/* The reader may take a moment to show (USB enumeration, libccid). */
	for (i = 0; i < 30; i++) {
		n = sizeof names;
		rv = SCardListReaders(ctx, NULL, names, &n);
		for (p = names; rv == SCARD_S_SUCCESS && *p; p += strlen(p) + 1)
			if (strstr(p, argv[1]) != NULL)
				goto found;
		sleep(1);
	}
	printf("guestclient: no reader matching \"%s\"\n", argv[1]);
	return 1;
found:
	snprintf(reader, sizeof reader, "%s", p);
	if (strcmp(argv[2], "waitremove") == 0)
		return waitremove(atol(argv[3]));
	for (i = 0; i < 20; i++) {
		rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &proto);
		if (rv != SCARD_E_NO_SMARTCARD && rv != SCARD_W_REMOVED_CARD)
			break;
		sleep(1);
	}
	if (rv != SCARD_S_SUCCESS)
		return fail("SCardConnect", rv);
	pci = proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	if (strcmp(argv[2], "reset") == 0)
		return reset();
	if (strcmp(argv[2], "hello") == 0) {
		rv = SCardStatus(card, names, &rlen, &state, &proto, atr, &atrlen);
		if (rv != SCARD_S_SUCCESS)
			return fail("SCardStatus", rv);
		printf("reader: %s\nprotocol: T=%d\natr:", reader, proto == SCARD_PROTOCOL_T0 ? 0 : 1);
		for (n = 0; n < atrlen; n++)
			printf(" %02X", atr[n]);
		printf("\n");
		return hello(1);
	}
	if (argc < 4)
		return 2;
	if (strcmp(argv[2], "bench") == 0)
		return bench(atol(argv[3]));
	if (strcmp(argv[2], "status") == 0)
		return status(atol(argv[3]));
	if (strcmp(argv[2], "cmd") == 0)
		return cmd(atol(argv[3]));
	if (strcmp(argv[2], "resp") == 0)
		return respn(atol(argv[3]));
	return 2;
}
