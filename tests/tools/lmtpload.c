/* lmtpload.c: LMTP load generator for the delivery benchmark
 * (tests/bench/bench_lmtp.py), and an LMTP sink that accepts everything
 * without storing it, used to show that the generator is not the bottleneck.
 *
 *   lmtpload --port P [--host 127.0.0.1] [--messages N] [--users U]
 *            [--connections C] [--size BYTES] [--domain D] [--tag T]
 *   lmtpload --sink P [--host 127.0.0.1]      (serves until SIGTERM/SIGINT)
 *
 * Load: C threads, one connection each; LHLO once, then per message MAIL, RCPT
 * and DATA in one write (PIPELINING), the body after 354, one reply per
 * recipient. Message i goes to u((i % U) + 1)@D and carries Message-ID
 * <T.i@D>, so a benchmark can check afterwards that every message arrived.
 * Prints one line of key=value figures; exits 1 when any message failed. */
#include "lib/lib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOAD_READ_BUF 65536
#define LOAD_THREADS_MAX 256
#define LOAD_REPLY_MAX 1024

struct load_opts {
	const char *host;
	unsigned port;
	unsigned messages;
	unsigned users;
	unsigned connections;
	unsigned size;
	const char *domain;
	const char *tag;
	unsigned sink_port;
};

/* A blocking connection with a read buffer. */
struct lconn {
	int fd;
	char buf[LOAD_READ_BUF];
	size_t start, end;
};

struct load_thread {
	const struct load_opts *opts;
	unsigned index;
	pthread_t tid;
	unsigned ok, failed;
	bool size_ext;          /* the server announced SIZE */
	uint32_t *latency_us;   /* one per message sent by this thread */
	unsigned latency_count;
	char first_error[LOAD_REPLY_MAX];
};

static int lconn_connect(struct lconn *c, const char *host, unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1;

	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return -1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->start = c->end = 0;
	if (connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(c->fd);
		return -1;
	}
	return 0;
}

static int write_full(int fd, const struct iovec *iov_in, int iovcnt)
{
	struct iovec iov[8];
	int i = 0;

	memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
	while (i < iovcnt) {
		ssize_t n = writev(fd, iov + i, iovcnt - i);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		while (i < iovcnt && (size_t)n >= iov[i].iov_len)
			n -= (ssize_t)iov[i++].iov_len;
		if (i < iovcnt) {
			iov[i].iov_base = (char *)iov[i].iov_base + n;
			iov[i].iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Reads one CRLF-terminated line (without CRLF) into line, truncated to size-1.
 * Returns its length, or -1 on EOF/error. */
static ssize_t lconn_read_line(struct lconn *c, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
		if (nl != NULL) {
			size_t len = (size_t)(nl - (c->buf + c->start));
			size_t copy = len > 0 && nl[-1] == '\r' ? len - 1 : len;
			if (copy >= size)
				copy = size - 1;
			memcpy(line, c->buf + c->start, copy);
			line[copy] = '\0';
			c->start += len + 1;
			return (ssize_t)copy;
		}
		if (c->start > 0) {
			memmove(c->buf, c->buf + c->start, c->end - c->start);
			c->end -= c->start;
			c->start = 0;
		}
		if (c->end == sizeof(c->buf))
			c->end = 0; /* an absurdly long line: drop what we have */
		ssize_t n = read(c->fd, c->buf + c->end, sizeof(c->buf) - c->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c->end += (size_t)n;
	}
}

/* Reads a whole (possibly multi-line) reply; returns its code or -1. */
static int lconn_read_reply(struct lconn *c, char *text, size_t size)
{
	for (;;) {
		ssize_t len = lconn_read_line(c, text, size);
		if (len < 0)
			return -1;
		if (len < 3)
			return -1;
		if (len == 3 || text[3] == ' ')
			return atoi(text);
		/* "250-..." continues */
	}
}

/* Sends LHLO and reads its reply; notes whether SIZE was announced. */
static int lconn_lhlo(struct lconn *c, bool *size_ext_r, char *text, size_t size)
{
	*size_ext_r = false;
	if (write(c->fd, "LHLO load.test\r\n", 16) != 16)
		return -1;
	for (;;) {
		ssize_t len = lconn_read_line(c, text, size);
		if (len < 3 || strncmp(text, "250", 3) != 0)
			return -1;
		if (len >= 8 && strncasecmp(text + 4, "SIZE", 4) == 0 && (len == 8 || text[8] == ' '))
			*size_ext_r = true;
		if (len == 3 || text[3] == ' ')
			return 0;
	}
}

/* The message body shared by all messages of a thread: printable lines of 76
 * characters, none starting with '.', filling up to about size bytes. */
static char *make_body(unsigned size, size_t *len_r)
{
	char *body = mf_malloc((size_t)size + 128);
	size_t len = 0;
	unsigned line = 0;

	while (len + 78 <= size || line == 0) {
		for (unsigned i = 0; i < 76; i++)
			body[len + i] = (char)('a' + (line * 7 + i) % 26);
		body[len + 76] = '\r';
		body[len + 77] = '\n';
		len += 78;
		line++;
	}
	memcpy(body + len, ".\r\n", 3);
	*len_r = len + 3;
	return body;
}

static void note_error(struct load_thread *t, unsigned msg, const char *what, const char *reply)
{
	if (t->failed++ == 0)
		snprintf(t->first_error, sizeof(t->first_error), "message %u %s: %.900s", msg, what, reply);
}

static int send_one(struct load_thread *t, struct lconn *c, unsigned msg,
		    const char *body, size_t body_len)
{
	const struct load_opts *o = t->opts;
	unsigned user = msg % o->users + 1;
	char cmds[512], hdr[1024], reply[LOAD_REPLY_MAX], size_param[32] = "";
	int n, code;

	if (t->size_ext)
		snprintf(size_param, sizeof(size_param), " SIZE=%zu", body_len + 300);
	n = snprintf(cmds, sizeof(cmds),
		     "MAIL FROM:<sender@load.test>%s\r\nRCPT TO:<u%u@%s>\r\nDATA\r\n",
		     size_param, user, o->domain);
	if (write(c->fd, cmds, (size_t)n) != n)
		return -1;
	int codes[3];
	char what_reply[LOAD_REPLY_MAX] = "";
	const char *what = NULL;
	for (int i = 0; i < 3; i++) {
		codes[i] = lconn_read_reply(c, reply, sizeof(reply));
		if (codes[i] < 0)
			return -1;
		if (what == NULL && (i < 2 ? codes[i] / 100 != 2 : codes[i] != 354)) {
			what = i == 0 ? "MAIL" : i == 1 ? "RCPT" : "DATA";
			snprintf(what_reply, sizeof(what_reply), "%s", reply);
		}
	}
	if (what != NULL && codes[2] == 354) {
		/* DATA open after a refused MAIL/RCPT: give up the connection (the
		 * caller counts this message and the rest as failed) */
		if (t->first_error[0] == '\0')
			snprintf(t->first_error, sizeof(t->first_error),
				 "message %u %s: %.900s (then DATA accepted)", msg, what, what_reply);
		return -1;
	}
	if (what != NULL) {
		note_error(t, msg, what, what_reply);
		return write(c->fd, "RSET\r\n", 6) == 6 &&
		       lconn_read_reply(c, reply, sizeof(reply)) > 0 ? 0 : -1;
	}
	n = snprintf(hdr, sizeof(hdr),
		     "From: Load Sender <sender@load.test>\r\nTo: <u%u@%s>\r\n"
		     "Subject: benchmark message %u\r\nMessage-ID: <%s.%u@%s>\r\n"
		     "Date: Wed, 25 Nov 2026 12:00:00 +0000\r\n\r\n",
		     user, o->domain, msg, o->tag, msg, o->domain);
	struct iovec iov[2] = { { hdr, (size_t)n }, { (void *)body, body_len } };
	if (write_full(c->fd, iov, 2) < 0)
		return -1;
	code = lconn_read_reply(c, reply, sizeof(reply));
	if (code < 0)
		return -1;
	if (code / 100 == 2)
		t->ok++;
	else
		note_error(t, msg, "after DATA", reply);
	return 0;
}

static void *load_thread_run(void *ctx)
{
	struct load_thread *t = ctx;
	const struct load_opts *o = t->opts;
	char reply[LOAD_REPLY_MAX] = "";
	struct lconn *c = mf_malloc(sizeof(*c));
	size_t body_len;
	char *body = make_body(o->size > 400 ? o->size - 240 : 160, &body_len);
	unsigned msg = t->index;

	if (lconn_connect(c, o->host, o->port) < 0) {
		snprintf(t->first_error, sizeof(t->first_error), "connect: %s", strerror(errno));
		goto out;
	}
	if (lconn_read_reply(c, reply, sizeof(reply)) != 220 ||
	    lconn_lhlo(c, &t->size_ext, reply, sizeof(reply)) < 0) {
		snprintf(t->first_error, sizeof(t->first_error), "greeting/LHLO: %.900s", reply);
		goto out_close;
	}
	for (; msg < o->messages; msg += o->connections) {
		uint64_t start = mf_now_us();
		if (send_one(t, c, msg, body, body_len) < 0) {
			if (t->first_error[0] == '\0')
				snprintf(t->first_error, sizeof(t->first_error),
					 "message %u: connection lost", msg);
			break;
		}
		t->latency_us[t->latency_count++] = (uint32_t)MF_MIN(mf_now_us() - start, UINT32_MAX);
	}
	if (write(c->fd, "QUIT\r\n", 6) == 6)
		(void)lconn_read_reply(c, reply, sizeof(reply));
out_close:
	close(c->fd);
out:
	/* messages this thread never got to count as failed */
	for (; msg < o->messages; msg += o->connections)
		t->failed++;
	free(body);
	free(c);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void print_results(const struct load_opts *o, struct load_thread *threads,
			  double secs, double cpu)
{
	unsigned ok = 0, failed = 0, nlat = 0;
	uint32_t *lat = mf_malloc(sizeof(*lat) * ((size_t)o->messages + 1));

	for (unsigned i = 0; i < o->connections; i++) {
		ok += threads[i].ok;
		failed += threads[i].failed;
		memcpy(lat + nlat, threads[i].latency_us, sizeof(*lat) * threads[i].latency_count);
		nlat += threads[i].latency_count;
	}
	qsort(lat, nlat, sizeof(*lat), cmp_u32);
	printf("messages=%u ok=%u failed=%u seconds=%.3f rate=%.1f "
	       "p50_ms=%.2f p99_ms=%.2f client_cpu_s=%.3f\n",
	       o->messages, ok, failed, secs, secs > 0 ? ok / secs : 0.0,
	       nlat ? lat[nlat / 2] / 1000.0 : 0.0,
	       nlat ? lat[(size_t)nlat * 99 / 100] / 1000.0 : 0.0, cpu);
	for (unsigned i = 0; i < o->connections; i++)
		if (threads[i].first_error[0] != '\0')
			fprintf(stderr, "lmtpload: connection %u: %s\n", i, threads[i].first_error);
	free(lat);
}

static int run_load(const struct load_opts *o)
{
	struct load_thread *threads = mf_calloc(o->connections, sizeof(*threads));
	double cpu0 = cpu_seconds();
	uint64_t start = mf_now_us();
	unsigned failed = 0, ok = 0;

	for (unsigned i = 0; i < o->connections; i++) {
		threads[i].opts = o;
		threads[i].index = i;
		threads[i].latency_us = mf_malloc(sizeof(uint32_t) * (o->messages / o->connections + 1));
		if (pthread_create(&threads[i].tid, NULL, load_thread_run, &threads[i]) != 0) {
			fprintf(stderr, "lmtpload: pthread_create failed\n");
			exit(2);
		}
	}
	for (unsigned i = 0; i < o->connections; i++)
		pthread_join(threads[i].tid, NULL);
	double secs = (double)(mf_now_us() - start) / 1e6;
	print_results(o, threads, secs, cpu_seconds() - cpu0);
	for (unsigned i = 0; i < o->connections; i++) {
		failed += threads[i].failed;
		ok += threads[i].ok;
		free(threads[i].latency_us);
	}
	free(threads);
	return failed == 0 && ok == o->messages ? 0 : 1;
}

/* --- sink: answers LMTP and throws the data away --- */

enum sink_state { SINK_CMD, SINK_DATA };

/* Consumes DATA bytes; returns true once "\r\n.\r\n" has been seen. The last
 * four bytes of the previous chunk are kept in tail to catch a split end. */
static bool sink_data_end(struct lconn *c, char *tail, size_t *tail_len)
{
	char win[8 + LOAD_READ_BUF];
	size_t have = c->end - c->start;

	memcpy(win, tail, *tail_len);
	memcpy(win + *tail_len, c->buf + c->start, have);
	size_t wlen = *tail_len + have;
	char *end = memmem(win, wlen, "\r\n.\r\n", 5);
	if (end != NULL) {
		size_t used = (size_t)(end + 5 - win) - *tail_len;
		c->start += used;
		*tail_len = 0;
		return true;
	}
	size_t keep = MF_MIN(wlen, 4);
	memcpy(tail, win + wlen - keep, keep);
	*tail_len = keep;
	c->start = c->end = 0;
	return false;
}

static int sink_reply(int fd, const char *text)
{
	size_t len = strlen(text);
	return write(fd, text, len) == (ssize_t)len ? 0 : -1;
}

static int sink_command(struct lconn *c, const char *line, enum sink_state *state)
{
	if (strncasecmp(line, "LHLO", 4) == 0)
		return sink_reply(c->fd, "250-sink\r\n250-PIPELINING\r\n250 SIZE\r\n");
	if (strncasecmp(line, "DATA", 4) == 0) {
		*state = SINK_DATA;
		return sink_reply(c->fd, "354 go ahead\r\n");
	}
	if (strncasecmp(line, "QUIT", 4) == 0) {
		(void)sink_reply(c->fd, "221 bye\r\n");
		return -1;
	}
	return sink_reply(c->fd, "250 2.0.0 OK\r\n");
}

static void *sink_conn_run(void *ctx)
{
	struct lconn *c = ctx;
	enum sink_state state = SINK_CMD;
	char line[LOAD_REPLY_MAX], tail[8];
	size_t tail_len = 2;

	memcpy(tail, "\r\n", 2); /* DATA may end at once with ".\r\n" */
	if (sink_reply(c->fd, "220 sink LMTP\r\n") < 0)
		goto out;
	for (;;) {
		if (state == SINK_DATA) {
			if (c->start == c->end) {
				ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
				if (n <= 0)
					break;
				c->start = 0;
				c->end = (size_t)n;
			}
			if (sink_data_end(c, tail, &tail_len)) {
				state = SINK_CMD;
				memcpy(tail, "\r\n", 2);
				tail_len = 2;
				if (sink_reply(c->fd, "250 2.0.0 stored nowhere\r\n") < 0)
					break;
			}
			continue;
		}
		if (lconn_read_line(c, line, sizeof(line)) < 0 ||
		    sink_command(c, line, &state) < 0)
			break;
	}
out:
	close(c->fd);
	free(c);
	return NULL;
}

static int run_sink(const struct load_opts *o)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->sink_port) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || inet_pton(AF_INET, o->host, &sin.sin_addr) != 1)
		return 2;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0) {
		fprintf(stderr, "lmtpload: sink bind %s:%u: %s\n", o->host, o->sink_port, strerror(errno));
		return 2;
	}
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR)
				continue;
			return 2;
		}
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct lconn *c = mf_calloc(1, sizeof(*c));
		pthread_t tid;
		c->fd = cfd;
		if (pthread_create(&tid, NULL, sink_conn_run, c) != 0) {
			close(cfd);
			free(c);
			continue;
		}
		pthread_detach(tid);
	}
}

static unsigned parse_uint(const char *opt, const char *value, unsigned min, unsigned max)
{
	char *end;
	unsigned long v = strtoul(value, &end, 10);
	if (*value == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "lmtpload: %s wants a number in %u..%u\n", opt, min, max);
		exit(2);
	}
	return (unsigned)v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: lmtpload --port P [--host A] [--messages N] [--users U] [--connections C]\n"
		"                [--size BYTES] [--domain D] [--tag T]\n"
		"       lmtpload --sink P [--host A]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct load_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--host") == 0) o->host = v;
		else if (strcmp(a, "--port") == 0) o->port = parse_uint(a, v, 1, 65535);
		else if (strcmp(a, "--sink") == 0) o->sink_port = parse_uint(a, v, 1, 65535);
		else if (strcmp(a, "--messages") == 0) o->messages = parse_uint(a, v, 1, 100000000);
		else if (strcmp(a, "--users") == 0) o->users = parse_uint(a, v, 1, 10000000);
		else if (strcmp(a, "--connections") == 0)
			o->connections = parse_uint(a, v, 1, LOAD_THREADS_MAX);
		else if (strcmp(a, "--size") == 0) o->size = parse_uint(a, v, 1, 100000000);
		else if (strcmp(a, "--domain") == 0) o->domain = v;
		else if (strcmp(a, "--tag") == 0) o->tag = v;
		else usage();
	}
	if ((o->port == 0) == (o->sink_port == 0))
		usage();
}

int main(int argc, char **argv)
{
	struct load_opts o = {
		.host = "127.0.0.1", .messages = 1000, .users = 200, .connections = 4,
		.size = 10240, .domain = "bench.test", .tag = "load",
	};

	parse_args(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	if (o.sink_port != 0)
		return run_sink(&o);
	return run_load(&o);
}
