/* imapload.c: IMAP load generator for the IMAP benchmark (tests/bench/bench_imap.py).
 *
 * Workload mode (default):
 *   imapload --port P --messages M [--clients N] [--users U] [--user-format F]
 *            [--password PW] [--iterations K | --duration SECS] [--fetch-count R]
 *            [--senders S] [--seed X]
 *   N threads, one connection at a time each; client c works as user
 *   (c % U) + 1 (F is a printf format with one %u, default "u%u@bench.test").
 *   Every mailbox holds the same M pre-filled messages with UIDs 1..M, message
 *   i (0-based) carrying "From: ... <sNN@remote.test>" (NN = i % S, two digits),
 *   "Subject: bench message i", "Message-ID: <bench.i.SIZE@bench.test>" where
 *   SIZE is its RFC822.SIZE (CRLF octets, 7 digits), and ending in the line
 *   "-- end of bench message i --". One session is:
 *     LOGIN, SELECT INBOX, UID FETCH of R headers, UID FETCH BODY.PEEK[] of one
 *     of them, UID STORE +FLAGS (\Seen), UID SEARCH UNSEEN, UID SEARCH FROM,
 *     UID STORE -FLAGS (\Seen), APPEND, UID STORE +FLAGS.SILENT (\Deleted),
 *     UID EXPUNGE of the appended message, LOGOUT
 *   and each completed command counts as one operation. Every answer is checked
 *   (EXISTS = M, sizes and Message-IDs agree, the body is the right one and
 *   complete, the flag change is reported, UNSEEN is exactly M - 1 UIDs without
 *   the one just marked, FROM finds exactly the messages of that sender, APPEND
 *   returns an APPENDUID, UID EXPUNGE reports the expunge); any NO, BAD,
 *   unexpected BYE, malformed or wrong answer is an error, the session is
 *   dropped and a new one started. Prints one line of key=value figures; exits
 *   1 when there was any error or no operation completed; ms_<command>= is the
 *   mean latency of each command of the session.
 *
 * Idle mode:   imapload --idle C --port P [--users U] [--messages M] ...
 *   Opens C connections (users cycled), each LOGIN, SELECT INBOX, IDLE; prints
 *   "ready ..." when all are idling, holds them until stdin reaches EOF, then
 *   ends every IDLE with DONE + LOGOUT and checks the answers.
 *
 * Script mode: imapload --script --port P --user NAME [--password PW] -- CMD...
 *   Logs in and runs each CMD in turn, printing for command k its time
 *   (ck_ms), the EXISTS seen (ck_exists) and the untagged FETCH responses
 *   (ck_fetch); exits 1 unless every command ends in OK. */
#include "lib/lib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOAD_CLIENTS_MAX 1024
#define LOAD_IDLE_MAX 200000
#define LOAD_IDLE_THREADS 16
#define LOAD_LINE_MAX (256u << 20)
#define LOAD_ERR_MAX 600
#define LOAD_FETCH_MAX 1000
#define LOAD_SCRIPT_MAX 32

struct load_opts {
	const char *host;
	unsigned port;
	unsigned clients;
	unsigned users;
	const char *user_format;
	const char *password;
	unsigned messages;
	unsigned iterations;
	unsigned duration;
	unsigned fetch_count;
	unsigned senders;
	unsigned seed;
	unsigned timeout;
	unsigned idle;
	bool script;
	const char *user;
	const char *scripts[LOAD_SCRIPT_MAX];
	unsigned script_count;
};

/* One response line with its literals inlined (the "{n}" marker kept, the n
 * octets appended right after it); the first literal is remembered. */
struct rline {
	char *data;
	size_t len, cap;
	bool has_lit;
	size_t lit_off, lit_len;
};

/* A blocking connection with a read buffer. */
struct iconn {
	int fd;
	char *buf;
	size_t bufsize, start, end;
	struct rline line;
	unsigned tagn;
	char tag[16];
	uint64_t sent_us;   /* when the last command was sent */
	char err[LOAD_ERR_MAX];
};

/* What the session learnt about the mailbox and the messages it fetched. */
struct session_state {
	unsigned exists, uidvalidity, uidnext;
	unsigned fetched;
	unsigned fetch_uid[LOAD_FETCH_MAX];
	unsigned fetch_index[LOAD_FETCH_MAX];
	unsigned fetch_size[LOAD_FETCH_MAX];
	unsigned store_uid;
	bool store_seen;
	bool store_reported;
	unsigned search_count;
	bool search_has_uid;
	bool search_bad_uid;
	unsigned expunges;
	unsigned expunge_seq;
	unsigned append_uid;
	unsigned senders;
	unsigned body_slot;
	bool body_ok;
	bool bye;
};

/* The commands of a session, for the latency figures. */
enum op_kind {
	OP_LOGIN, OP_SELECT, OP_FETCH_HEADERS, OP_FETCH_BODY, OP_STORE_SEEN, OP_SEARCH_UNSEEN,
	OP_SEARCH_FROM, OP_APPEND, OP_STORE_DELETED, OP_EXPUNGE, OP_LOGOUT, OP_COUNT
};
static const char *const op_names[OP_COUNT] = {
	"login", "select", "fetch_headers", "fetch_body", "store_seen", "search_unseen",
	"search_from", "append", "store_deleted", "expunge", "logout",
};

struct client {
	const struct load_opts *opts;
	unsigned index;
	pthread_t tid;
	struct iconn *conn;
	unsigned long long ops, errors, sessions;
	unsigned long long op_count[OP_COUNT], op_us[OP_COUNT];
	unsigned rand_state;
	char first_error[LOAD_ERR_MAX + 64];
};

typedef int untagged_fn(struct iconn *c, struct session_state *st, const struct rline *l);

/* SIGINT/SIGTERM in workload mode: finish the current sessions, then report. */
static volatile sig_atomic_t stop_flag;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* ---------------------------------------------------------------- helpers */

static int fail(struct iconn *c, const char *fmt, ...) MF_PRINTF(2, 3);
static int fail(struct iconn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err[0] != '\0')
		return -1;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* A printable excerpt of a response line, for error messages. */
static const char *excerpt(const struct rline *l, char *out, size_t size)
{
	size_t n = MF_MIN(l->len, size - 1);

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)l->data[i];
		out[i] = ch >= 32 && ch < 127 ? (char)ch : '.';
	}
	out[n] = '\0';
	return out;
}

static void rline_append(struct rline *l, const char *data, size_t len)
{
	if (l->len + len + 1 > l->cap) {
		size_t cap = MF_MAX(l->cap * 2, l->len + len + 1);
		l->cap = MF_MAX(cap, (size_t)256);
		l->data = mf_realloc(l->data, l->cap);
	}
	memcpy(l->data + l->len, data, len);
	l->len += len;
	l->data[l->len] = '\0';
}

static unsigned next_rand(unsigned *state)
{
	*state = *state * 1103515245u + 12345u;
	return (*state >> 8) & 0xffffff;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- connection */

static void conn_init(struct iconn *c, size_t bufsize)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->bufsize = bufsize;
	c->buf = mf_malloc(bufsize);
}

static void conn_close(struct iconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->start = c->end = 0;
}

static void conn_free(struct iconn *c)
{
	conn_close(c);
	mf_free(&c->buf);
	mf_free(&c->line.data);
	c->line.cap = c->line.len = 0;
}

static int conn_connect(struct iconn *c, const struct load_opts *o)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	struct timeval tv = { .tv_sec = o->timeout };
	int one = 1;

	c->err[0] = '\0';
	c->tagn = 0;
	if (inet_pton(AF_INET, o->host, &sin.sin_addr) != 1)
		return fail(c, "bad host %s", o->host);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return fail(c, "socket: %s", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c->start = c->end = 0;
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		int err = errno;
		conn_close(c);
		return fail(c, "connect: %s", strerror(err));
	}
	return 0;
}

static int conn_fill(struct iconn *c)
{
	if (c->start == c->end)
		c->start = c->end = 0;
	if (c->end == c->bufsize) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	for (;;) {
		ssize_t n = read(c->fd, c->buf + c->end, c->bufsize - c->end);
		if (n > 0) {
			c->end += (size_t)n;
			return 0;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return fail(c, "connection closed by the server");
		return fail(c, "read: %s", errno == EAGAIN ? "timed out" : strerror(errno));
	}
}

static int conn_write(struct iconn *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(c->fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fail(c, "write: %s", n < 0 ? strerror(errno) : "nothing written");
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Appends one line (without CRLF) to l. */
static int read_raw_line(struct iconn *c, struct rline *l)
{
	for (;;) {
		char *p = c->buf + c->start;
		char *nl = memchr(p, '\n', c->end - c->start);
		if (nl != NULL) {
			size_t n = (size_t)(nl - p);
			rline_append(l, p, n > 0 && nl[-1] == '\r' ? n - 1 : n);
			c->start += n + 1;
			return 0;
		}
		/* keep a lone trailing CR for the next round */
		size_t n = c->end - c->start;
		size_t take = n > 0 && p[n - 1] == '\r' ? n - 1 : n;
		rline_append(l, p, take);
		c->start += take;
		if (l->len > LOAD_LINE_MAX)
			return fail(c, "response line longer than %u octets", LOAD_LINE_MAX);
		if (conn_fill(c) < 0)
			return -1;
		if (take < n && c->buf[c->start + 1] != '\n') {
			rline_append(l, "\r", 1);
			c->start++;
		}
	}
}

static int read_bytes(struct iconn *c, struct rline *l, size_t n)
{
	while (n > 0) {
		if (c->start == c->end && conn_fill(c) < 0)
			return -1;
		size_t take = MF_MIN(n, c->end - c->start);
		rline_append(l, c->buf + c->start, take);
		c->start += take;
		n -= take;
	}
	return 0;
}

/* The literal size if the text ends in "{n}" or "{n+}", else -1. */
static long long literal_size(const char *s, size_t len)
{
	if (len < 3 || s[len - 1] != '}')
		return -1;
	size_t i = len - 1;
	if (s[i - 1] == '+')
		i--;
	size_t end = i;
	while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || s[i - 1] != '{' || end - i > 10)
		return -1;
	return strtoll(s + i, NULL, 10);
}

/* Reads a whole response line, literals inlined. */
static int read_response(struct iconn *c)
{
	struct rline *l = &c->line;

	l->len = 0;
	l->has_lit = false;
	for (;;) {
		size_t from = l->len;
		if (read_raw_line(c, l) < 0)
			return -1;
		long long n = literal_size(l->data + from, l->len - from);
		if (n < 0)
			return 0;
		if ((unsigned long long)n > LOAD_LINE_MAX)
			return fail(c, "literal of %lld octets", n);
		if (!l->has_lit) {
			l->has_lit = true;
			l->lit_off = l->len;
			l->lit_len = (size_t)n;
		}
		if (read_bytes(c, l, (size_t)n) < 0)
			return -1;
	}
}

static int send_cmd(struct iconn *c, const char *fmt, ...) MF_PRINTF(2, 3);
static int send_cmd(struct iconn *c, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int n;

	snprintf(c->tag, sizeof(c->tag), "a%u", ++c->tagn);
	n = snprintf(cmd, sizeof(cmd), "%s ", c->tag);
	va_start(ap, fmt);
	n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n - 2, fmt, ap);
	va_end(ap);
	if ((size_t)n >= sizeof(cmd) - 2)
		return fail(c, "command too long");
	memcpy(cmd + n, "\r\n", 2);
	c->sent_us = mf_now_us();
	return conn_write(c, cmd, (size_t)n + 2);
}

/* Reads responses up to the tagged one for c->tag. Untagged ones go to fn;
 * "* BAD", "* NO" and (unless bye_ok) "* BYE" are errors, as is a tagged
 * status other than OK. With want_cont, a "+" continuation ends the wait
 * (returns 1). */
static int read_until_tagged(struct iconn *c, const char *what, untagged_fn *fn,
			     struct session_state *st, bool bye_ok, bool want_cont)
{
	struct rline *l = &c->line;
	size_t taglen = strlen(c->tag);
	char ex[200];

	for (;;) {
		if (read_response(c) < 0)
			return fail(c, "%s: %s", what, c->err);
		if (strncmp(l->data, "* ", 2) == 0) {
			const char *p = l->data + 2;
			if (strncasecmp(p, "BAD", 3) == 0 || strncasecmp(p, "NO ", 3) == 0 ||
			    (!bye_ok && strncasecmp(p, "BYE", 3) == 0))
				return fail(c, "%s: untagged error: %s", what, excerpt(l, ex, sizeof(ex)));
			if (fn != NULL && fn(c, st, l) < 0)
				return fail(c, "%s: wrong answer: %s", what, excerpt(l, ex, sizeof(ex)));
			continue;
		}
		if (l->data[0] == '+') {
			if (want_cont)
				return 1;
			return fail(c, "%s: unexpected continuation: %s", what, excerpt(l, ex, sizeof(ex)));
		}
		if (strncmp(l->data, c->tag, taglen) == 0 && l->data[taglen] == ' ') {
			if (strncmp(l->data + taglen + 1, "OK", 2) == 0 &&
			    (l->data[taglen + 3] == ' ' || l->data[taglen + 3] == '\0'))
				return 0;
			return fail(c, "%s: %s", what, excerpt(l, ex, sizeof(ex)));
		}
		return fail(c, "%s: malformed response: %s", what, excerpt(l, ex, sizeof(ex)));
	}
}

/* ---------------------------------------------------------------- parsing */

/* Finds needle in the line outside its first literal. */
static const char *find_outside_literal(const struct rline *l, const char *needle)
{
	size_t nlen = strlen(needle);
	size_t end1 = l->has_lit ? l->lit_off : l->len;
	const char *p = memmem(l->data, end1, needle, nlen);

	if (p != NULL || !l->has_lit)
		return p;
	size_t from = l->lit_off + l->lit_len;
	return memmem(l->data + from, l->len - from, needle, nlen);
}

/* The number after " NAME " / "(NAME " outside the literal, or -1. */
static long long item_number(const struct rline *l, const char *name)
{
	char needle[64];

	snprintf(needle, sizeof(needle), " %s ", name);
	const char *p = find_outside_literal(l, needle);
	if (p == NULL) {
		snprintf(needle, sizeof(needle), "(%s ", name);
		p = find_outside_literal(l, needle);
	}
	if (p == NULL)
		return -1;
	p += strlen(needle);
	if (*p < '0' || *p > '9')
		return -1;
	return strtoll(p, NULL, 10);
}

/* "* <n> <word>..." : n, or -1 when the line is not of that form. */
static long long untagged_number(const struct rline *l, const char *word)
{
	const char *p = l->data + 2;
	char *end;

	if (*p < '0' || *p > '9')
		return -1;
	long long n = strtoll(p, &end, 10);
	size_t wlen = strlen(word);
	if (*end != ' ' || strncasecmp(end + 1, word, wlen) != 0 ||
	    (end[1 + wlen] != '\0' && end[1 + wlen] != ' '))
		return -1;
	return n;
}

/* Parses "<bench.I.SIZE@" in data. */
static bool parse_msgid(const char *data, size_t len, unsigned *index_r, unsigned *size_r)
{
	const char *p = memmem(data, len, "<bench.", 7);
	char *end;

	if (p == NULL)
		return false;
	p += 7;
	unsigned long i = strtoul(p, &end, 10);
	if (end == p || *end != '.')
		return false;
	p = end + 1;
	unsigned long s = strtoul(p, &end, 10);
	if (end == p || *end != '@')
		return false;
	*index_r = (unsigned)i;
	*size_r = (unsigned)s;
	return true;
}

/* ---------------------------------------------------------------- workload */

static int on_select(struct iconn *c, struct session_state *st, const struct rline *l)
{
	long long n = untagged_number(l, "EXISTS");
	const char *p;

	if (n >= 0)
		st->exists = (unsigned)n;
	if ((p = strstr(l->data, "[UIDVALIDITY ")) != NULL)
		st->uidvalidity = (unsigned)strtoul(p + 13, NULL, 10);
	if ((p = strstr(l->data, "[UIDNEXT ")) != NULL)
		st->uidnext = (unsigned)strtoul(p + 9, NULL, 10);
	return 0;
}

/* Checks a header FETCH line of message uid against what the message says
 * about itself; records uid, index and size. */
static int on_fetch_headers(struct iconn *c, struct session_state *st, const struct rline *l)
{
	long long uid = item_number(l, "UID"), size = item_number(l, "RFC822.SIZE");
	unsigned index, msize;
	char want[64], from[32];

	if (untagged_number(l, "FETCH") < 0)
		return 0;
	if (uid < 1 || size < 0 || !l->has_lit || find_outside_literal(l, "FLAGS (") == NULL)
		return -1;
	const char *lit = l->data + l->lit_off;
	if (!parse_msgid(lit, l->lit_len, &index, &msize) || msize != (unsigned long long)size)
		return -1;
	snprintf(from, sizeof(from), "<s%02u@remote.test>", index % st->senders);
	snprintf(want, sizeof(want), "Subject: bench message %u\r\n", index);
	if (memmem(lit, l->lit_len, want, strlen(want)) == NULL ||
	    memmem(lit, l->lit_len, from, strlen(from)) == NULL ||
	    memmem(lit, l->lit_len, "Date: ", 6) == NULL)
		return -1;
	if (st->fetched >= LOAD_FETCH_MAX)
		return -1;
	for (unsigned i = 0; i < st->fetched; i++)
		if (st->fetch_uid[i] == (unsigned)uid)
			return -1;
	st->fetch_uid[st->fetched] = (unsigned)uid;
	st->fetch_index[st->fetched] = index;
	st->fetch_size[st->fetched] = msize;
	st->fetched++;
	return 0;
}

static int on_fetch_body(struct iconn *c, struct session_state *st, const struct rline *l)
{
	unsigned k = st->body_slot;
	unsigned index, msize;
	char want[64];

	if (untagged_number(l, "FETCH") < 0)
		return 0;
	if (item_number(l, "UID") != st->fetch_uid[k] || !l->has_lit ||
	    find_outside_literal(l, "BODY[] {") == NULL)
		return -1;
	const char *lit = l->data + l->lit_off;
	if (l->lit_len != st->fetch_size[k] || !parse_msgid(lit, l->lit_len, &index, &msize) ||
	    index != st->fetch_index[k] || msize != st->fetch_size[k])
		return -1;
	int n = snprintf(want, sizeof(want), "\r\n-- end of bench message %u --\r\n", index);
	if (l->lit_len < (size_t)n || memcmp(lit + l->lit_len - (size_t)n, want, (size_t)n) != 0)
		return -1;
	if (st->body_ok)
		return -1; /* twice */
	st->body_ok = true;
	return 0;
}

static int on_store(struct iconn *c, struct session_state *st, const struct rline *l)
{
	if (untagged_number(l, "FETCH") < 0)
		return 0;
	if (item_number(l, "UID") != st->store_uid)
		return -1;
	const char *f = strstr(l->data, "FLAGS (");
	if (f == NULL)
		return -1;
	const char *end = strchr(f, ')');
	if (end == NULL)
		return -1;
	const char *seen = strcasestr(f, "\\Seen");
	bool has = seen != NULL && seen < end;
	if (has != st->store_seen)
		return -1;
	st->store_reported = true;
	return 0;
}

static int on_search(struct iconn *c, struct session_state *st, const struct rline *l)
{
	if (strncmp(l->data, "* SEARCH", 8) != 0)
		return 0;
	const char *p = l->data + 8;
	while (*p == ' ') {
		char *end;
		p++;
		unsigned long uid = strtoul(p, &end, 10);
		if (end == p || (*end != ' ' && *end != '\0'))
			return -1;
		st->search_count++;
		if (uid == st->store_uid)
			st->search_has_uid = true;
		if (uid < 1 || uid >= st->uidnext)
			st->search_bad_uid = true;
		p = end;
	}
	return *p == '\0' ? 0 : -1;
}

static int on_expunge(struct iconn *c, struct session_state *st, const struct rline *l)
{
	long long n = untagged_number(l, "EXPUNGE");

	if (n >= 0) {
		st->expunges++;
		st->expunge_seq = (unsigned)n;
	}
	return 0;
}

static int on_logout(struct iconn *c, struct session_state *st, const struct rline *l)
{
	if (strncasecmp(l->data, "* BYE", 5) == 0)
		st->bye = true;
	return 0;
}

/* A command completed and checked: one operation, its latency noted. */
static void op_done(struct client *cl, enum op_kind kind)
{
	cl->ops++;
	cl->op_count[kind]++;
	cl->op_us[kind] += mf_now_us() - cl->conn->sent_us;
}

static int cmd_login(struct client *cl, const char *user)
{
	struct iconn *c = cl->conn;

	if (send_cmd(c, "LOGIN \"%s\" \"%s\"", user, cl->opts->password) < 0 ||
	    read_until_tagged(c, "LOGIN", NULL, NULL, false, false) < 0)
		return -1;
	op_done(cl, OP_LOGIN);
	return 0;
}

static int read_greeting(struct iconn *c)
{
	char ex[200];

	if (read_response(c) < 0)
		return fail(c, "greeting: %s", c->err);
	if (strncmp(c->line.data, "* OK", 4) != 0)
		return fail(c, "greeting: %s", excerpt(&c->line, ex, sizeof(ex)));
	return 0;
}

static int cmd_select(struct client *cl, struct session_state *st)
{
	struct iconn *c = cl->conn;
	unsigned m = cl->opts->messages;

	if (send_cmd(c, "SELECT INBOX") < 0 ||
	    read_until_tagged(c, "SELECT", on_select, st, false, false) < 0)
		return -1;
	if (m != 0 && st->exists != m)
		return fail(c, "SELECT: %u EXISTS, expected %u", st->exists, m);
	if (st->uidvalidity == 0 || st->uidnext <= st->exists)
		return fail(c, "SELECT: UIDVALIDITY %u UIDNEXT %u with %u messages",
			    st->uidvalidity, st->uidnext, st->exists);
	op_done(cl, OP_SELECT);
	return 0;
}

static int cmd_fetch(struct client *cl, struct session_state *st)
{
	struct iconn *c = cl->conn;
	const struct load_opts *o = cl->opts;
	unsigned r = MF_MIN(o->fetch_count, o->messages);
	unsigned lo = 1 + next_rand(&cl->rand_state) % (o->messages - r + 1), hi = lo + r - 1;

	st->fetched = 0;
	if (send_cmd(c, "UID FETCH %u:%u (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
		     "(From To Subject Date Message-ID)])", lo, hi) < 0 ||
	    read_until_tagged(c, "UID FETCH headers", on_fetch_headers, st, false, false) < 0)
		return -1;
	if (st->fetched != r)
		return fail(c, "UID FETCH %u:%u: %u messages returned", lo, hi, st->fetched);
	for (unsigned i = 0; i < st->fetched; i++)
		if (st->fetch_uid[i] < lo || st->fetch_uid[i] > hi || st->fetch_index[i] >= o->messages)
			return fail(c, "UID FETCH %u:%u: UID %u out of range", lo, hi, st->fetch_uid[i]);
	op_done(cl, OP_FETCH_HEADERS);

	unsigned k = next_rand(&cl->rand_state) % st->fetched;
	st->body_slot = k;
	st->body_ok = false;
	if (send_cmd(c, "UID FETCH %u BODY.PEEK[]", st->fetch_uid[k]) < 0 ||
	    read_until_tagged(c, "UID FETCH body", on_fetch_body, st, false, false) < 0)
		return -1;
	if (!st->body_ok)
		return fail(c, "UID FETCH %u BODY.PEEK[]: no body returned", st->fetch_uid[k]);
	st->store_uid = st->fetch_uid[k];
	op_done(cl, OP_FETCH_BODY);
	return 0;
}

static int cmd_store_seen(struct client *cl, struct session_state *st, bool add)
{
	struct iconn *c = cl->conn;

	st->store_seen = add;
	st->store_reported = false;
	if (send_cmd(c, "UID STORE %u %cFLAGS (\\Seen)", st->store_uid, add ? '+' : '-') < 0 ||
	    read_until_tagged(c, "UID STORE", on_store, st, false, false) < 0)
		return -1;
	if (!st->store_reported)
		return fail(c, "UID STORE %u %cFLAGS: no FETCH response with the new flags",
			    st->store_uid, add ? '+' : '-');
	op_done(cl, OP_STORE_SEEN);
	return 0;
}

static int cmd_search(struct client *cl, struct session_state *st)
{
	struct iconn *c = cl->conn;
	const struct load_opts *o = cl->opts;

	st->search_count = 0;
	st->search_has_uid = st->search_bad_uid = false;
	if (send_cmd(c, "UID SEARCH UNSEEN") < 0 ||
	    read_until_tagged(c, "UID SEARCH UNSEEN", on_search, st, false, false) < 0)
		return -1;
	if (st->search_count != o->messages - 1 || st->search_has_uid || st->search_bad_uid)
		return fail(c, "UID SEARCH UNSEEN: %u UIDs (expected %u)%s%s", st->search_count,
			    o->messages - 1, st->search_has_uid ? ", including the one just marked \\Seen" : "",
			    st->search_bad_uid ? ", some out of range" : "");
	op_done(cl, OP_SEARCH_UNSEEN);

	unsigned sender = next_rand(&cl->rand_state) % o->senders;
	unsigned want = o->messages / o->senders + (sender < o->messages % o->senders ? 1 : 0);
	st->search_count = 0;
	st->search_has_uid = st->search_bad_uid = false;
	if (send_cmd(c, "UID SEARCH FROM \"s%02u@remote.test\"", sender) < 0 ||
	    read_until_tagged(c, "UID SEARCH FROM", on_search, st, false, false) < 0)
		return -1;
	if (st->search_count != want || st->search_bad_uid)
		return fail(c, "UID SEARCH FROM s%02u@remote.test: %u UIDs, expected %u%s", sender,
			    st->search_count, want, st->search_bad_uid ? ", some out of range" : "");
	op_done(cl, OP_SEARCH_FROM);
	return 0;
}

static int cmd_append(struct client *cl, struct session_state *st, unsigned long long n)
{
	struct iconn *c = cl->conn;
	char msg[2048];
	int len = snprintf(msg, sizeof(msg),
			   "From: Load Generator <load@bench.test>\r\nTo: <u@bench.test>\r\n"
			   "Subject: appended by client %u session %llu\r\n"
			   "Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n"
			   "Message-ID: <append.%u.%llu@bench.test>\r\n\r\n", cl->index, n, cl->index, n);
	while (len < 1500)
		len += snprintf(msg + len, sizeof(msg) - (size_t)len,
				"appended body line %d of a small message\r\n", len);
	const char *p;
	int ret;

	if (send_cmd(c, "APPEND INBOX (\\Seen) {%d}", len) < 0)
		return -1;
	ret = read_until_tagged(c, "APPEND", on_select, st, false, true);
	if (ret < 0)
		return -1;
	if (ret == 0)
		return fail(c, "APPEND: OK without asking for the literal");
	if (conn_write(c, msg, (size_t)len) < 0 || conn_write(c, "\r\n", 2) < 0 ||
	    read_until_tagged(c, "APPEND", on_select, st, false, false) < 0)
		return -1;
	if ((p = strstr(c->line.data, "[APPENDUID ")) == NULL)
		return fail(c, "APPEND: no APPENDUID in %s", c->line.data);
	char *end;
	unsigned long v = strtoul(p + 11, &end, 10);
	unsigned long uid = strtoul(end, &end, 10);
	if (v != st->uidvalidity || uid < st->uidnext || *end != ']')
		return fail(c, "APPEND: %s (UIDVALIDITY %u, UIDNEXT %u)", c->line.data,
			    st->uidvalidity, st->uidnext);
	st->append_uid = (unsigned)uid;
	op_done(cl, OP_APPEND);
	return 0;
}

static int cmd_expunge(struct client *cl, struct session_state *st)
{
	struct iconn *c = cl->conn;

	if (send_cmd(c, "UID STORE %u +FLAGS.SILENT (\\Deleted)", st->append_uid) < 0 ||
	    read_until_tagged(c, "UID STORE +FLAGS.SILENT (\\Deleted)", NULL, NULL, false, false) < 0)
		return -1;
	op_done(cl, OP_STORE_DELETED);
	st->expunges = 0;
	if (send_cmd(c, "UID EXPUNGE %u", st->append_uid) < 0 ||
	    read_until_tagged(c, "UID EXPUNGE", on_expunge, st, false, false) < 0)
		return -1;
	if (st->expunges != 1 || st->expunge_seq != cl->opts->messages + 1)
		return fail(c, "UID EXPUNGE %u: %u EXPUNGE responses (last for %u), expected one for %u",
			    st->append_uid, st->expunges, st->expunge_seq, cl->opts->messages + 1);
	op_done(cl, OP_EXPUNGE);
	return 0;
}

static int cmd_logout(struct client *cl, struct session_state *st)
{
	struct iconn *c = cl->conn;

	st->bye = false;
	if (send_cmd(c, "LOGOUT") < 0 ||
	    read_until_tagged(c, "LOGOUT", on_logout, st, true, false) < 0)
		return -1;
	if (!st->bye)
		return fail(c, "LOGOUT: no BYE");
	op_done(cl, OP_LOGOUT);
	return 0;
}

static void user_name(const struct load_opts *o, unsigned n, char *out, size_t size)
{
	snprintf(out, size, o->user_format, n);
}

static int session(struct client *cl)
{
	struct iconn *c = cl->conn;
	struct session_state st;
	char user[256];

	memset(&st, 0, sizeof(st));
	st.senders = cl->opts->senders;
	user_name(cl->opts, cl->index % cl->opts->users + 1, user, sizeof(user));
	if (conn_connect(c, cl->opts) < 0 || read_greeting(c) < 0 || cmd_login(cl, user) < 0 ||
	    cmd_select(cl, &st) < 0 || cmd_fetch(cl, &st) < 0 || cmd_store_seen(cl, &st, true) < 0 ||
	    cmd_search(cl, &st) < 0 || cmd_store_seen(cl, &st, false) < 0 ||
	    cmd_append(cl, &st, cl->sessions) < 0 || cmd_expunge(cl, &st) < 0 ||
	    cmd_logout(cl, &st) < 0) {
		conn_close(c);
		return -1;
	}
	conn_close(c);
	return 0;
}

static void *client_run(void *ctx)
{
	struct client *cl = ctx;
	const struct load_opts *o = cl->opts;
	uint64_t deadline = mf_now_ms() + (uint64_t)o->duration * 1000;

	for (unsigned n = 0; !stop_flag; n++) {
		if (o->iterations != 0 ? n >= o->iterations : mf_now_ms() >= deadline)
			break;
		if (session(cl) < 0) {
			cl->errors++;
			if (cl->first_error[0] == '\0')
				snprintf(cl->first_error, sizeof(cl->first_error), "client %u (%s): %s",
					 cl->index, o->user_format, cl->conn->err);
			usleep(10000);
		}
		cl->sessions++;
	}
	return NULL;
}

static void raise_nofile(unsigned want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want;
	if (rl.rlim_max < want)
		rl.rlim_max = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		fprintf(stderr, "imapload: cannot raise the open file limit to %u: %s\n", want,
			strerror(errno));
}

static int run_load(const struct load_opts *o)
{
	struct client *clients = mf_calloc(o->clients, sizeof(*clients));
	unsigned long long ops = 0, errors = 0, sessions = 0;
	const char *first = NULL;

	raise_nofile(o->clients + 64);
	double cpu0 = cpu_seconds();
	uint64_t t0 = mf_now_us();
	for (unsigned i = 0; i < o->clients; i++) {
		struct client *cl = &clients[i];
		cl->opts = o;
		cl->index = i;
		cl->rand_state = o->seed * 7919u + i * 104729u + 1;
		cl->conn = mf_calloc(1, sizeof(*cl->conn));
		conn_init(cl->conn, 65536);
		if (pthread_create(&cl->tid, NULL, client_run, cl) != 0) {
			fprintf(stderr, "imapload: pthread_create failed\n");
			exit(2);
		}
	}
	for (unsigned i = 0; i < o->clients; i++) {
		pthread_join(clients[i].tid, NULL);
		ops += clients[i].ops;
		errors += clients[i].errors;
		sessions += clients[i].sessions;
		if (first == NULL && clients[i].first_error[0] != '\0')
			first = clients[i].first_error;
	}
	double secs = (double)(mf_now_us() - t0) / 1e6;
	printf("clients=%u sessions=%llu ops=%llu errors=%llu seconds=%.3f rate=%.1f client_cpu_s=%.3f",
	       o->clients, sessions, ops, errors, secs, secs > 0 ? (double)ops / secs : 0.0,
	       cpu_seconds() - cpu0);
	for (unsigned k = 0; k < OP_COUNT; k++) {
		unsigned long long n = 0, us = 0;
		for (unsigned i = 0; i < o->clients; i++) {
			n += clients[i].op_count[k];
			us += clients[i].op_us[k];
		}
		printf(" ms_%s=%.3f", op_names[k], n > 0 ? (double)us / (double)n / 1e3 : 0.0);
	}
	printf("\n");
	fflush(stdout);
	if (first != NULL)
		fprintf(stderr, "imapload: %llu error(s); first: %s\n", errors, first);
	for (unsigned i = 0; i < o->clients; i++) {
		conn_free(clients[i].conn);
		free(clients[i].conn);
	}
	free(clients);
	return errors > 0 || ops == 0 ? 1 : 0;
}

/* ---------------------------------------------------------------- idle mode */

struct idle_thread {
	const struct load_opts *opts;
	struct iconn *conns;
	bool *ok;
	unsigned first, step;
	pthread_t tid;
	unsigned long long errors, ok_count;
	char first_error[LOAD_ERR_MAX + 64];
	bool finish;
};

static int idle_open(const struct load_opts *o, struct iconn *c, unsigned i)
{
	struct client cl = { .opts = o, .index = i, .conn = c };
	struct session_state st;
	char user[256];

	memset(&st, 0, sizeof(st));
	user_name(o, i % o->users + 1, user, sizeof(user));
	if (conn_connect(c, o) < 0 || read_greeting(c) < 0 || cmd_login(&cl, user) < 0 ||
	    cmd_select(&cl, &st) < 0)
		return -1;
	if (send_cmd(c, "IDLE") < 0 || read_until_tagged(c, "IDLE", NULL, NULL, false, true) != 1)
		return fail(c, "IDLE: %s", c->err[0] ? c->err : "completed without a continuation");
	return 0;
}

static int idle_close(struct iconn *c)
{
	if (conn_write(c, "DONE\r\n", 6) < 0 ||
	    read_until_tagged(c, "DONE", NULL, NULL, false, false) < 0)
		return -1;
	if (send_cmd(c, "LOGOUT") < 0 || read_until_tagged(c, "LOGOUT", NULL, NULL, true, false) < 0)
		return -1;
	conn_close(c);
	return 0;
}

static void *idle_run(void *ctx)
{
	struct idle_thread *t = ctx;
	const struct load_opts *o = t->opts;

	for (unsigned i = t->first; i < o->idle; i += t->step) {
		struct iconn *c = &t->conns[i];
		int ret = t->finish ? (t->ok[i] ? idle_close(c) : 0) : idle_open(o, c, i);
		if (t->finish && !t->ok[i])
			continue;
		if (ret < 0) {
			t->errors++;
			t->ok[i] = false;
			if (t->first_error[0] == '\0')
				snprintf(t->first_error, sizeof(t->first_error), "connection %u: %s", i, c->err);
			conn_close(c);
		} else {
			t->ok[i] = !t->finish;
			t->ok_count++;
		}
		/* a small buffer is enough while idling */
	}
	return NULL;
}

static unsigned long long idle_phase(const struct load_opts *o, struct idle_thread *threads,
				     unsigned nthreads, bool finish, unsigned long long *errors_r,
				     const char **first_r)
{
	unsigned long long ok = 0;

	for (unsigned i = 0; i < nthreads; i++) {
		threads[i].finish = finish;
		threads[i].ok_count = 0;
		if (pthread_create(&threads[i].tid, NULL, idle_run, &threads[i]) != 0) {
			fprintf(stderr, "imapload: pthread_create failed\n");
			exit(2);
		}
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(threads[i].tid, NULL);
		ok += threads[i].ok_count;
		*errors_r += threads[i].errors;
		if (*first_r == NULL && threads[i].first_error[0] != '\0')
			*first_r = threads[i].first_error;
	}
	return ok;
}

static int run_idle(const struct load_opts *o)
{
	unsigned nthreads = MF_MIN(o->idle, LOAD_IDLE_THREADS);
	struct iconn *conns = mf_calloc(o->idle, sizeof(*conns));
	bool *ok = mf_calloc(o->idle, sizeof(*ok));
	struct idle_thread *threads = mf_calloc(nthreads, sizeof(*threads));
	unsigned long long errors = 0;
	const char *first = NULL;
	char buf[256];

	raise_nofile(o->idle + 64);
	for (unsigned i = 0; i < o->idle; i++)
		conn_init(&conns[i], 2048);
	for (unsigned i = 0; i < nthreads; i++)
		threads[i] = (struct idle_thread){ .opts = o, .conns = conns, .ok = ok,
						   .first = i, .step = nthreads };
	uint64_t t0 = mf_now_us();
	unsigned long long idling = idle_phase(o, threads, nthreads, false, &errors, &first);
	printf("ready connections=%u idling=%llu errors=%llu setup_s=%.3f\n", o->idle, idling, errors,
	       (double)(mf_now_us() - t0) / 1e6);
	fflush(stdout);
	if (first != NULL)
		fprintf(stderr, "imapload: first error: %s\n", first);
	for (;;) {
		errno = 0;
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	unsigned long long before = errors;
	first = NULL;
	unsigned long long closed = idle_phase(o, threads, nthreads, true, &errors, &first);
	printf("done connections=%u idling=%llu closed=%llu errors=%llu\n", o->idle, idling, closed,
	       errors);
	if (first != NULL && errors > before)
		fprintf(stderr, "imapload: first error while closing: %s\n", first);
	for (unsigned i = 0; i < o->idle; i++)
		conn_free(&conns[i]);
	free(conns);
	free(ok);
	free(threads);
	return errors > 0 || idling != o->idle || closed != idling ? 1 : 0;
}

/* ---------------------------------------------------------------- script mode */

struct script_counts {
	unsigned exists, fetch;
};

static int on_script(struct iconn *c, struct session_state *st, const struct rline *l)
{
	struct script_counts *sc = (struct script_counts *)st;
	long long n;

	if ((n = untagged_number(l, "EXISTS")) >= 0)
		sc->exists = (unsigned)n;
	else if (untagged_number(l, "FETCH") >= 0)
		sc->fetch++;
	return 0;
}

static int run_script(const struct load_opts *o)
{
	struct iconn conn;
	struct client cl = { .opts = o, .conn = &conn };
	struct iconn *c = &conn;
	int ret = 0;

	conn_init(c, 1 << 20);
	uint64_t t0 = mf_now_us();
	if (conn_connect(c, o) < 0 || read_greeting(c) < 0 || cmd_login(&cl, o->user) < 0) {
		fprintf(stderr, "imapload: %s\n", c->err);
		conn_free(c);
		return 1;
	}
	printf("login_ms=%.3f", (double)(mf_now_us() - t0) / 1e3);
	for (unsigned k = 0; k < o->script_count; k++) {
		struct script_counts sc = { 0, 0 };
		t0 = mf_now_us();
		if (send_cmd(c, "%s", o->scripts[k]) < 0 ||
		    read_until_tagged(c, o->scripts[k], on_script, (struct session_state *)&sc,
				      false, false) < 0) {
			fprintf(stderr, "imapload: %s\n", c->err);
			ret = 1;
			break;
		}
		printf(" c%u_ms=%.3f c%u_exists=%u c%u_fetch=%u", k + 1,
		       (double)(mf_now_us() - t0) / 1e3, k + 1, sc.exists, k + 1, sc.fetch);
	}
	printf("\n");
	if (ret == 0 && (send_cmd(c, "LOGOUT") < 0 ||
			 read_until_tagged(c, "LOGOUT", NULL, NULL, true, false) < 0)) {
		fprintf(stderr, "imapload: %s\n", c->err);
		ret = 1;
	}
	conn_free(c);
	return ret;
}

/* ---------------------------------------------------------------- main */

static unsigned parse_uint(const char *opt, const char *value, unsigned min, unsigned max)
{
	char *end;
	unsigned long v = strtoul(value, &end, 10);

	if (*value == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "imapload: %s wants a number in %u..%u\n", opt, min, max);
		exit(2);
	}
	return (unsigned)v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: imapload --port P --messages M [--clients N] [--users U] [--user-format F]\n"
		"                [--password PW] [--iterations K | --duration SECS] [--fetch-count R]\n"
		"                [--senders S] [--seed X] [--timeout SECS] [--host A]\n"
		"       imapload --idle C --port P [--users U] [--messages M] ...\n"
		"       imapload --script --port P --user NAME [--password PW] -- COMMAND...\n");
	exit(2);
}

static bool valid_user_format(const char *f)
{
	const char *p = strchr(f, '%');

	return p != NULL && p[1] == 'u' && strchr(p + 2, '%') == NULL && strlen(f) < 200;
}

static void parse_args(int argc, char **argv, struct load_opts *o)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "--script") == 0) {
			o->script = true;
			continue;
		}
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--host") == 0) o->host = v;
		else if (strcmp(a, "--port") == 0) o->port = parse_uint(a, v, 1, 65535);
		else if (strcmp(a, "--clients") == 0) o->clients = parse_uint(a, v, 1, LOAD_CLIENTS_MAX);
		else if (strcmp(a, "--users") == 0) o->users = parse_uint(a, v, 1, 10000000);
		else if (strcmp(a, "--user-format") == 0) o->user_format = v;
		else if (strcmp(a, "--user") == 0) o->user = v;
		else if (strcmp(a, "--password") == 0) o->password = v;
		else if (strcmp(a, "--messages") == 0) o->messages = parse_uint(a, v, 1, 100000000);
		else if (strcmp(a, "--iterations") == 0) o->iterations = parse_uint(a, v, 1, 100000000);
		else if (strcmp(a, "--duration") == 0) o->duration = parse_uint(a, v, 1, 86400);
		else if (strcmp(a, "--fetch-count") == 0) o->fetch_count = parse_uint(a, v, 1, LOAD_FETCH_MAX);
		else if (strcmp(a, "--senders") == 0) o->senders = parse_uint(a, v, 1, 100);
		else if (strcmp(a, "--seed") == 0) o->seed = parse_uint(a, v, 0, 1000000000);
		else if (strcmp(a, "--timeout") == 0) o->timeout = parse_uint(a, v, 1, 3600);
		else if (strcmp(a, "--idle") == 0) o->idle = parse_uint(a, v, 1, LOAD_IDLE_MAX);
		else usage();
	}
	for (i++; i < argc && o->script_count < LOAD_SCRIPT_MAX; i++)
		o->scripts[o->script_count++] = argv[i];
	if (o->port == 0 || !valid_user_format(o->user_format) || strchr(o->password, '"') != NULL)
		usage();
	if (o->script && (o->user == NULL || o->script_count == 0))
		usage();
	if (!o->script && o->idle == 0 && (o->messages < 2 || (o->iterations == 0) == (o->duration == 0)))
		usage();
}

int main(int argc, char **argv)
{
	struct load_opts o = {
		.host = "127.0.0.1", .clients = 10, .users = 0, .user_format = "u%u@bench.test",
		.password = "benchpw", .fetch_count = 20, .senders = 50, .timeout = 120,
	};

	parse_args(argc, argv, &o);
	if (o.users == 0)
		o.users = o.idle != 0 ? MF_MIN(o.idle, 50) : o.clients;
	signal(SIGPIPE, SIG_IGN);
	if (o.script)
		return run_script(&o);
	if (o.idle != 0)
		return run_idle(&o);
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return run_load(&o);
}
