/* test-conn.c: the network runtime with a tiny line-echo protocol on a
 * loopback port (21100-21199): bytes fed one at a time, pipelining across a
 * blocking job, the output-queue limit, the idle timeout, the per-IP limit,
 * STARTTLS (with plaintext injected after it discarded) and implicit TLS,
 * done() on a closing connection, and a shutdown that lets a job finish. */
#include "frontend/server.h"
#include "frontend/tls.h"
#include "lib/log.h"
#include "tests/unit/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static atomic_int sessions_new, sessions_freed, done_calls, done_closing, injected;
static atomic_int write_failed, tick_jobs;

struct echo_session {
	struct conn *conn;
	bool ticking;   /* "TICK": a blocking job every tick, as an IMAP IDLE poll */
};

static void *echo_new(struct conn *conn)
{
	struct echo_session *s = mf_calloc(1, sizeof(*s));
	s->conn = conn;
	atomic_fetch_add(&sessions_new, 1);
	conn_printf(conn, "hello\r\n");
	return s;
}

static void job_sleep(void *arg)
{
	usleep((useconds_t)(uintptr_t)arg * 1000);
}

static void job_done(void *session, struct conn *conn, void *arg)
{
	atomic_fetch_add(&done_calls, 1);
	if (conn_is_closing(conn))
		atomic_fetch_add(&done_closing, 1);
	else
		conn_printf(conn, "done\r\n");
}

static void tick_done(void *session, struct conn *conn, void *arg)
{
	atomic_fetch_add(&tick_jobs, 1);
}

static void echo_tick(void *session, struct conn *conn)
{
	struct echo_session *s = session;

	if (s->ticking)
		conn_run_blocking(conn, job_sleep, tick_done, (void *)(uintptr_t)50);
}

static void echo_command(struct conn *conn, const char *line)
{
	if (strcmp(line, "JOB") == 0) {
		conn_run_blocking(conn, job_sleep, job_done, (void *)(uintptr_t)200);
	} else if (strcmp(line, "JOBCLOSE") == 0) {
		conn_run_blocking(conn, job_sleep, job_done, (void *)(uintptr_t)100);
		conn_close(conn, "test");
	} else if (strcmp(line, "FLOOD") == 0) {
		static char chunk[8192];
		memset(chunk, 'x', sizeof(chunk));
		for (int i = 0; i < 64; i++) {
			if (conn_write(conn, chunk, sizeof(chunk)) < 0) {
				atomic_fetch_add(&write_failed, 1);
				break;
			}
		}
	} else if (strcmp(line, "STARTTLS") == 0) {
		conn_printf(conn, "go\r\n");
		if (conn_starttls(conn) < 0)
			conn_printf(conn, "no\r\n");
	} else if (strcmp(line, "QUIT") == 0) {
		conn_printf(conn, "bye\r\n");
		conn_close(conn, "quit");
	} else {
		if (strcmp(line, "INJECT") == 0)
			atomic_fetch_add(&injected, 1);
		conn_printf(conn, "%s%s\r\n", conn_is_tls(conn) ? "tls:" : "", line);
	}
}

static void echo_input(void *session, struct conn *conn)
{
	struct buf *in = conn_input(conn);
	unsigned char *nl;

	while (!conn_is_closing(conn) && (nl = memchr(in->data, '\n', in->len)) != NULL) {
		size_t len = (size_t)(nl - in->data);
		char line[2048];
		snprintf(line, sizeof(line), "%.*s", (int)(len > 0 && nl[-1] == '\r' ? len - 1 : len),
			 (const char *)in->data);
		buf_consume(in, len + 1);
		if (strcmp(line, "TICK") == 0) {
			((struct echo_session *)session)->ticking = true;
			conn_printf(conn, "ticking\r\n");
			continue;
		}
		echo_command(conn, line);
		if (strcmp(line, "JOB") == 0 || strcmp(line, "STARTTLS") == 0)
			break;   /* the runtime calls again when it may */
	}
	if (in->len > 1024) {
		conn_printf(conn, "line too long\r\n");
		conn_close(conn, "line too long");
	}
}

static void echo_free(void *session)
{
	atomic_fetch_add(&sessions_freed, 1);
	free(session);
}

static const struct proto_handler echo_handler = {
	.name = "echo", .session_new = echo_new, .session_input = echo_input,
	.session_free = echo_free, .session_tick = echo_tick,
};

/* ---- harness ---- */

static struct mf_context context = { .hostname = "test.example" };

static void default_limits(struct mf_limits *l)
{
	memset(l, 0, sizeof(*l));
	l->line_max = 1024;
	l->message_size_max = 1 << 20;
	l->rcpt_max = 10;
	l->connections_max = 100;
	l->connections_per_ip = 50;
	l->idle_timeout_secs = 30;
	l->data_timeout_secs = 30;
	l->output_queue_max = 64 * 1024;
	l->bad_commands_max = 5;
}

static struct server *start_server(const struct mf_limits *limits, struct tls_ctx *tls,
				   bool implicit_tls, unsigned *port_r)
{
	struct server_settings set = { .limits = *limits, .event_threads = 2,
				       .worker_threads = 2, .tls = tls, .context = &context };
	struct server *server = server_new(&set);
	struct mf_listener_config l = { .protocol = MF_PROTO_LMTP, .address = "127.0.0.1",
					.tls = implicit_tls };
	const char *error;

	for (l.port = 21100; l.port < 21200; l.port++) {
		if (server_listen(server, &l, &echo_handler, &error) == 0)
			break;
	}
	CHECK(l.port < 21200);
	CHECK_INT_EQ(server_start(server, &error), 0);
	*port_r = server_listener_port(server, 0);
	CHECK_INT_EQ(*port_r, l.port);
	return server;
}

static void stop_server(struct server **server)
{
	server_stop(*server);
	CHECK(server_wait(*server, 10000));
	server_free(server);
	CHECK_INT_EQ(atomic_load(&sessions_new), atomic_load(&sessions_freed));
}

static int client_connect(unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void client_send(int fd, const char *text)
{
	size_t len = strlen(text);
	CHECK_INT_EQ(send(fd, text, len, MSG_NOSIGNAL), len);
}

/* Reads one line (without CRLF); "" on EOF, "(timeout)" on timeout. */
static void client_line(int fd, SSL *ssl, char *line, size_t size)
{
	size_t pos = 0;

	while (pos + 1 < size) {
		char ch;
		int n = ssl != NULL ? SSL_read(ssl, &ch, 1) : (int)recv(fd, &ch, 1, 0);
		if (n <= 0) {
			snprintf(line, size, "%s", n < 0 && errno == EAGAIN ? "(timeout)" : "");
			return;
		}
		if (ch == '\n')
			break;
		if (ch != '\r')
			line[pos++] = ch;
	}
	line[pos] = '\0';
}

#define EXPECT_LINE(fd, ssl, text) do { char line_[256]; \
	client_line(fd, ssl, line_, sizeof(line_)); CHECK_STR_EQ(line_, text); } while (0)

/* True when the server closed the connection within secs. */
static bool closed_within(int fd, int secs)
{
	char data[65536];
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (int waited = 0; waited < secs * 10; ) {
		if (poll(&p, 1, 100) == 0) {
			waited++;
			continue;
		}
		ssize_t n = recv(fd, data, sizeof(data), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return true;
	}
	return false;
}

/* ---- tests ---- */

static void test_echo_bytewise(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	struct server *server = start_server(&limits, NULL, false, &port);
	int fd = client_connect(port);

	EXPECT_LINE(fd, NULL, "hello");
	const char *text = "abc\r\nsecond line\r\n";
	for (const char *p = text; *p != '\0'; p++) {
		CHECK_INT_EQ(send(fd, p, 1, 0), 1);
		usleep(1000);
	}
	EXPECT_LINE(fd, NULL, "abc");
	EXPECT_LINE(fd, NULL, "second line");
	client_send(fd, "QUIT\r\n");
	EXPECT_LINE(fd, NULL, "bye");
	CHECK(closed_within(fd, 2));
	close(fd);
	stop_server(&server);
}

static void test_pipelined_job(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	struct server *server = start_server(&limits, NULL, false, &port);
	int fd = client_connect(port);
	int before = atomic_load(&done_calls);

	EXPECT_LINE(fd, NULL, "hello");
	client_send(fd, "JOB\r\nafter\r\nJOB\r\nlast\r\n");
	EXPECT_LINE(fd, NULL, "done");
	EXPECT_LINE(fd, NULL, "after");
	EXPECT_LINE(fd, NULL, "done");
	EXPECT_LINE(fd, NULL, "last");
	CHECK_INT_EQ(atomic_load(&done_calls) - before, 2);

	/* done() runs although the handler closed the connection meanwhile */
	int closing_before = atomic_load(&done_closing);
	client_send(fd, "JOBCLOSE\r\n");
	CHECK(closed_within(fd, 3));
	CHECK_INT_EQ(atomic_load(&done_closing) - closing_before, 1);
	close(fd);
	stop_server(&server);
}

static void test_output_limit(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	limits.output_queue_max = 64 * 1024;
	struct server *server = start_server(&limits, NULL, false, &port);
	int fd = client_connect(port);
	int rcvbuf = 4096;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	EXPECT_LINE(fd, NULL, "hello");
	client_send(fd, "FLOOD\r\n");
	CHECK(closed_within(fd, 3));
	CHECK_INT_EQ(atomic_load(&write_failed), 1);
	close(fd);
	CHECK_INT_EQ(server_connection_count(server), 0);
	stop_server(&server);
}

static void test_idle_timeout(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	limits.idle_timeout_secs = 1;
	struct server *server = start_server(&limits, NULL, false, &port);
	int fd = client_connect(port);
	uint64_t start = mf_now_ms();

	EXPECT_LINE(fd, NULL, "hello");
	CHECK(closed_within(fd, 4));
	uint64_t elapsed = mf_now_ms() - start;
	CHECK(elapsed >= 900 && elapsed < 3500);
	close(fd);
	stop_server(&server);
}

/* Jobs the server starts by itself (IMAP IDLE polls) are no sign of life
 * from the client: a silent client still times out. */
static void test_idle_timeout_with_tick_jobs(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	limits.idle_timeout_secs = 2;
	struct server *server = start_server(&limits, NULL, false, &port);
	int fd = client_connect(port);
	int jobs_before = atomic_load(&tick_jobs);

	EXPECT_LINE(fd, NULL, "hello");
	CHECK(write(fd, "TICK\r\n", 6) == 6);
	EXPECT_LINE(fd, NULL, "ticking");
	CHECK(closed_within(fd, 6));
	CHECK(atomic_load(&tick_jobs) > jobs_before);
	close(fd);
	stop_server(&server);
}

static void test_per_ip_limit(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	limits.connections_per_ip = 2;
	struct server *server = start_server(&limits, NULL, false, &port);
	int a = client_connect(port), b = client_connect(port);

	EXPECT_LINE(a, NULL, "hello");
	EXPECT_LINE(b, NULL, "hello");
	int c = client_connect(port);
	CHECK(closed_within(c, 2));
	close(c);
	CHECK_INT_EQ(server_connection_count(server), 2);
	close(a);
	usleep(200000);
	c = client_connect(port);
	EXPECT_LINE(c, NULL, "hello");
	close(b);
	close(c);
	stop_server(&server);
}

static struct tls_ctx *make_tls(void)
{
	const char *tmp = getenv("TMPDIR");
	char cert[512], key[512];
	const char *error = NULL;

	snprintf(cert, sizeof(cert), "%s/test-conn-%d/tls/cert.pem", tmp != NULL ? tmp : "/tmp", getpid());
	snprintf(key, sizeof(key), "%s/test-conn-%d/tls/key.pem", tmp != NULL ? tmp : "/tmp", getpid());
	struct tls_ctx *ctx = tls_ctx_new(cert, key);
	CHECK_INT_EQ(tls_ctx_ensure_self_signed(ctx, "test.example", &error), 1);
	CHECK_INT_EQ(tls_ctx_ensure_self_signed(ctx, "test.example", &error), 0);
	CHECK_INT_EQ(tls_ctx_load(ctx, &error), 0);
	/* a reload keeps working; a broken key keeps the old context */
	CHECK_INT_EQ(tls_ctx_load(ctx, &error), 0);
	FILE *f = fopen(key, "w");
	fputs("garbage\n", f);
	fclose(f);
	CHECK_INT_EQ(tls_ctx_load(ctx, &error), -1);
	CHECK(error != NULL && strstr(error, "key.pem") != NULL);
	SSL *ssl = tls_ctx_new_ssl(ctx);
	CHECK(ssl != NULL);
	SSL_free(ssl);
	unlink(key);
	unlink(cert);
	*strrchr(cert, '/') = '\0';
	rmdir(cert);
	*strrchr(cert, '/') = '\0';
	rmdir(cert);
	return ctx;
}

static SSL *client_tls(int fd, SSL_CTX **ctx_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = SSL_new(ctx);

	SSL_set_fd(ssl, fd);
	CHECK_INT_EQ(SSL_connect(ssl), 1);
	CHECK(SSL_version(ssl) >= TLS1_2_VERSION);
	*ctx_r = ctx;
	return ssl;
}

static struct tls_ctx *tls;

static void test_starttls(void)
{
	struct mf_limits limits;
	unsigned port;
	SSL_CTX *cctx;
	default_limits(&limits);
	struct server *server = start_server(&limits, tls, false, &port);
	int fd = client_connect(port);

	EXPECT_LINE(fd, NULL, "hello");
	/* one segment: whatever follows STARTTLS in plaintext must be dropped */
	client_send(fd, "STARTTLS\r\nINJECT\r\n");
	EXPECT_LINE(fd, NULL, "go");
	SSL *ssl = client_tls(fd, &cctx);
	CHECK_INT_EQ(SSL_write(ssl, "secret\r\n", 8), 8);
	EXPECT_LINE(fd, ssl, "tls:secret");
	CHECK_INT_EQ(SSL_write(ssl, "STARTTLS\r\n", 10), 10);
	EXPECT_LINE(fd, ssl, "go");
	EXPECT_LINE(fd, ssl, "no");
	CHECK_INT_EQ(atomic_load(&injected), 0);
	SSL_free(ssl);
	SSL_CTX_free(cctx);
	close(fd);
	stop_server(&server);
}

static void test_implicit_tls(void)
{
	struct mf_limits limits;
	unsigned port;
	SSL_CTX *cctx;
	default_limits(&limits);
	struct server *server = start_server(&limits, tls, true, &port);
	int fd = client_connect(port);
	SSL *ssl = client_tls(fd, &cctx);
	char big[3000];

	EXPECT_LINE(fd, ssl, "hello");
	memset(big, 'y', 900);
	memcpy(big + 900, "\r\n", 3);
	CHECK_INT_EQ(SSL_write(ssl, big, 902), 902);
	char line[1024];
	client_line(fd, ssl, line, sizeof(line));
	CHECK_INT_EQ(strlen(line), 904);
	CHECK_INT_EQ(SSL_write(ssl, "JOB\r\n", 5), 5);
	EXPECT_LINE(fd, ssl, "done");
	SSL_free(ssl);
	SSL_CTX_free(cctx);
	close(fd);

	/* a client that speaks plaintext to a TLS port is dropped */
	fd = client_connect(port);
	client_send(fd, "HELLO THERE\r\n\r\n");
	CHECK(closed_within(fd, 3));
	close(fd);
	stop_server(&server);
}

static void test_shutdown_waits_for_job(void)
{
	struct mf_limits limits;
	unsigned port;
	default_limits(&limits);
	struct server *server = start_server(&limits, NULL, false, &port);
	int fd = client_connect(port);
	int idle = client_connect(port);

	EXPECT_LINE(fd, NULL, "hello");
	EXPECT_LINE(idle, NULL, "hello");
	client_send(fd, "JOB\r\n");
	usleep(50000);
	server_stop(server);
	/* the idle connection closes at once; the job's reply still arrives */
	CHECK(closed_within(idle, 2));
	EXPECT_LINE(fd, NULL, "done");
	CHECK(closed_within(fd, 2));
	CHECK(server_wait(server, 5000));
	close(fd);
	close(idle);
	server_free(&server);
	CHECK_INT_EQ(atomic_load(&sessions_new), atomic_load(&sessions_freed));
}

int main(void)
{
	if (getenv("MF_TEST_DEBUG") != NULL)
		log_set_level(LOG_LEVEL_DEBUG);
	else
		log_set_level(LOG_LEVEL_WARN);
	test_run(test_echo_bytewise);
	test_run(test_pipelined_job);
	test_run(test_output_limit);
	test_run(test_idle_timeout);
	test_run(test_idle_timeout_with_tick_jobs);
	test_run(test_per_ip_limit);
	tls = make_tls();
	test_run(test_starttls);
	test_run(test_implicit_tls);
	tls_ctx_free(&tls);
	test_run(test_shutdown_waits_for_job);
	return test_exit();
}
