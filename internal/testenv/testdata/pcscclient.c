/*
 * pcscclient: a small client of the real libpcsclite, for cardshare's tests.
 * testenv.BuildClient compiles it; libpcsclite finds pcscd's socket through
 * PCSCLITE_CSOCK_NAME.
 *
 * usage: pcscclient [-r READER] MODE [ARG]
 *   hello          SELECT the hello-world applet, send 00 00 00 00, print
 *                  "reader: NAME", "response: TEXT" and "sw: XXXX"
 *   bench N        the same, with N transmits of 00 00 00 00; print one line
 *                  of key=value latency statistics
 *   wait SECONDS   print "waiting: STATE" for the reader, then wait for its
 *                  state to change and print "changed: STATE events=N"
 *   list           print the reader names, one a line
 * Without -r, hello, bench and wait use the first reader.
 *
 * Exit status: 0 success; 1 a PC/SC error, printed on stderr as
 * "pcscclient: FUNCTION: TEXT (0xCODE)", or a wrong answer from the card;
 * 2 usage; 3 wait timed out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <winscard.h>

static const BYTE select_apdu[] = {
	0x00, 0xA4, 0x04, 0x00, 0x0A,
	0xA0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01, 0x0C, 0x06, 0x01,
};
static const BYTE hello_apdu[] = {0x00, 0x00, 0x00, 0x00};
static const char greeting[] = "Hello world!";

static int pcsc_error(const char *function, LONG rv)
{
	fprintf(stderr, "pcscclient: %s: %s (0x%08lX)\n", function,
		pcsc_stringify_error(rv), (unsigned long)rv);
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: pcscclient [-r READER] hello | bench N | wait SECONDS | list\n");
	return 2;
}

/* first_reader returns the first reader of a multi-string, or NULL. */
static const char *first_reader(const char *readers)
{
	return readers[0] != '\0' ? readers : NULL;
}

struct card {
	SCARDHANDLE handle;
	const SCARD_IO_REQUEST *pci;
};

static LONG connect_card(SCARDCONTEXT ctx, const char *reader, struct card *c)
{
	DWORD protocol;
	LONG rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED,
		SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &c->handle, &protocol);
	if (rv == SCARD_S_SUCCESS)
		c->pci = protocol == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	return rv;
}

/* transmit sends an APDU and stores the response; *len is its size. */
static LONG transmit(const struct card *c, const BYTE *apdu, DWORD apdu_len,
	BYTE *resp, DWORD *len)
{
	*len = MAX_BUFFER_SIZE;
	return SCardTransmit(c->handle, c->pci, apdu, apdu_len, NULL, resp, len);
}

static unsigned sw(const BYTE *resp, DWORD len)
{
	return len < 2 ? 0 : (unsigned)resp[len - 2] << 8 | resp[len - 1];
}

/* select_applet selects the hello-world applet; 0 on success. */
static int select_applet(const struct card *c)
{
	BYTE resp[MAX_BUFFER_SIZE];
	DWORD len;
	LONG rv = transmit(c, select_apdu, sizeof select_apdu, resp, &len);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_error("SCardTransmit(SELECT)", rv);
	if (sw(resp, len) != 0x9000) {
		fprintf(stderr, "pcscclient: SELECT answered SW %04X\n", sw(resp, len));
		return 1;
	}
	return 0;
}

static int hello(const struct card *c, const char *reader)
{
	BYTE resp[MAX_BUFFER_SIZE];
	DWORD len, i;
	LONG rv;

	if (select_applet(c) != 0)
		return 1;
	rv = transmit(c, hello_apdu, sizeof hello_apdu, resp, &len);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_error("SCardTransmit", rv);
	if (len < 2) {
		fprintf(stderr, "pcscclient: response of %lu bytes has no SW\n", (unsigned long)len);
		return 1;
	}
	printf("reader: %s\nresponse: ", reader);
	for (i = 0; i < len - 2; i++)
		putchar(resp[i] >= 0x20 && resp[i] < 0x7F ? resp[i] : '.');
	printf("\nsw: %04X\n", sw(resp, len));
	return sw(resp, len) == 0x9000 ? 0 : 1;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

static int bench(const struct card *c, long n)
{
	BYTE resp[MAX_BUFFER_SIZE];
	DWORD len;
	long i, over10 = 0;
	long long start, total, *lat;
	LONG rv;

	if (n <= 0)
		return usage();
	lat = malloc(n * sizeof *lat);
	if (lat == NULL) {
		fprintf(stderr, "pcscclient: out of memory\n");
		return 1;
	}
	if (select_applet(c) != 0)
		return 1;
	start = now_ns();
	for (i = 0; i < n; i++) {
		long long t0 = now_ns();
		rv = transmit(c, hello_apdu, sizeof hello_apdu, resp, &len);
		lat[i] = now_ns() - t0;
		if (rv != SCARD_S_SUCCESS)
			return pcsc_error("SCardTransmit", rv);
		if (len != sizeof greeting - 1 + 2 || sw(resp, len) != 0x9000 ||
			memcmp(resp, greeting, sizeof greeting - 1) != 0) {
			fprintf(stderr, "pcscclient: round trip %ld: wrong response (%lu bytes, SW %04X)\n",
				i, (unsigned long)len, sw(resp, len));
			return 1;
		}
		if (lat[i] > 10000000LL)
			over10++;
	}
	total = now_ns() - start;
	qsort(lat, n, sizeof *lat, cmp_ll);
	printf("count=%ld median_us=%.1f p99_us=%.1f max_us=%.1f apdu_per_s=%.0f over_10ms=%ld total_ms=%.1f\n",
		n, lat[(n - 1) / 2] / 1e3, lat[(n * 99 + 99) / 100 - 1] / 1e3, lat[n - 1] / 1e3,
		n / (total / 1e9), over10, total / 1e6);
	free(lat);
	return 0;
}

static void print_state(DWORD state)
{
	static const struct {
		DWORD bit;
		const char *name;
	} names[] = {
		{SCARD_STATE_IGNORE, "IGNORE"},
		{SCARD_STATE_CHANGED, "CHANGED"},
		{SCARD_STATE_UNKNOWN, "UNKNOWN"},
		{SCARD_STATE_UNAVAILABLE, "UNAVAILABLE"},
		{SCARD_STATE_EMPTY, "EMPTY"},
		{SCARD_STATE_PRESENT, "PRESENT"},
		{SCARD_STATE_ATRMATCH, "ATRMATCH"},
		{SCARD_STATE_EXCLUSIVE, "EXCLUSIVE"},
		{SCARD_STATE_INUSE, "INUSE"},
		{SCARD_STATE_MUTE, "MUTE"},
		{SCARD_STATE_UNPOWERED, "UNPOWERED"},
	};
	const char *sep = "";
	size_t i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (state & names[i].bit) {
			printf("%s%s", sep, names[i].name);
			sep = "|";
		}
	}
	if (*sep == '\0')
		printf("UNAWARE");
}

static int wait_change(SCARDCONTEXT ctx, const char *reader, long seconds)
{
	SCARD_READERSTATE rs;
	LONG rv;

	if (seconds <= 0)
		return usage();
	memset(&rs, 0, sizeof rs);
	rs.szReader = reader;
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	rv = SCardGetStatusChange(ctx, 0, &rs, 1);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_error("SCardGetStatusChange", rv);
	printf("waiting: ");
	print_state(rs.dwEventState & ~SCARD_STATE_CHANGED);
	printf("\n");
	fflush(stdout);

	rs.dwCurrentState = rs.dwEventState & ~SCARD_STATE_CHANGED;
	rv = SCardGetStatusChange(ctx, seconds * 1000, &rs, 1);
	if (rv == SCARD_E_TIMEOUT) {
		fprintf(stderr, "pcscclient: no change in %ld s\n", seconds);
		return 3;
	}
	if (rv != SCARD_S_SUCCESS)
		return pcsc_error("SCardGetStatusChange", rv);
	printf("changed: ");
	print_state(rs.dwEventState & 0xFFFF);
	printf(" events=%lu\n", (unsigned long)(rs.dwEventState >> 16));
	return 0;
}

int main(int argc, char **argv)
{
	SCARDCONTEXT ctx;
	LPSTR readers = NULL;
	DWORD readers_len = SCARD_AUTOALLOCATE;
	const char *reader = NULL, *mode, *p;
	struct card card;
	long arg = 0;
	int ret;
	LONG rv;

	if (argc >= 3 && strcmp(argv[1], "-r") == 0) {
		reader = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (argc < 2)
		return usage();
	mode = argv[1];
	if (strcmp(mode, "bench") == 0 || strcmp(mode, "wait") == 0) {
		if (argc != 3)
			return usage();
		arg = strtol(argv[2], NULL, 10);
	} else if (argc != 2) {
		return usage();
	}

	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_error("SCardEstablishContext", rv);

	rv = SCardListReaders(ctx, NULL, (LPSTR)&readers, &readers_len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE && strcmp(mode, "list") == 0) {
		SCardReleaseContext(ctx);
		return 0;
	}
	if (rv != SCARD_S_SUCCESS)
		return pcsc_error("SCardListReaders", rv);

	if (strcmp(mode, "list") == 0) {
		for (p = readers; *p != '\0'; p += strlen(p) + 1)
			printf("%s\n", p);
		ret = 0;
		goto out;
	}
	if (reader == NULL)
		reader = first_reader(readers);
	if (reader == NULL) {
		ret = pcsc_error("SCardListReaders", SCARD_E_NO_READERS_AVAILABLE);
		goto out;
	}
	if (strcmp(mode, "wait") == 0) {
		ret = wait_change(ctx, reader, arg);
		goto out;
	}
	if (strcmp(mode, "hello") != 0 && strcmp(mode, "bench") != 0) {
		ret = usage();
		goto out;
	}

	rv = connect_card(ctx, reader, &card);
	if (rv != SCARD_S_SUCCESS) {
		ret = pcsc_error("SCardConnect", rv);
		goto out;
	}
	ret = strcmp(mode, "hello") == 0 ? hello(&card, reader) : bench(&card, arg);
	rv = SCardDisconnect(card.handle, SCARD_LEAVE_CARD);
	if (rv != SCARD_S_SUCCESS && ret == 0)
		ret = pcsc_error("SCardDisconnect", rv);

out:
	SCardFreeMemory(ctx, readers);
	rv = SCardReleaseContext(ctx);
	if (rv != SCARD_S_SUCCESS && ret == 0)
		ret = pcsc_error("SCardReleaseContext", rv);
	return ret;
}
