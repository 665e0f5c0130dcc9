/* conn.c: one client connection on its event loop: bounded input and output
 * buffers, plaintext or TLS I/O (implicit TLS and STARTTLS), timeouts, the
 * hand-off of blocking work to the worker pool, and the close path.
 *
 * A connection is freed only by conn_destroy(), called from the loop after
 * its pass (conn_loop_reap) and never while a worker job for it runs. Every
 * other place that ends a connection just marks it: conn_close() (flush,
 * then reap) or conn_abort() (drop output, reap). Interest in epoll is
 * recomputed after every step (conn_update_events), level triggered; a
 * connection that waits for nothing is removed from epoll altogether so a
 * hung-up socket cannot spin the loop while a job runs. */
#include "frontend/server-private.h"
#include "frontend/conn-compress.h"
#include "frontend/tls.h"
#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#define CLOSE_FLUSH_SECS 5
#define INPUT_SLACK 16384   /* beyond line_max: room to read DATA in chunks */
#define OUTPUT_COMPACT_MIN 65536
#define BUFFER_KEEP_MAX 16384
#define ZIN_MAX 32768       /* compressed input read ahead of inflating */
#define DEFLATE_CHUNK 16384 /* plaintext compressed per step */

struct conn {
	enum loop_handle_kind kind;        /* HANDLE_CONN */
	int fd;
	unsigned id;
	struct loop *loop;
	struct listener *listener;
	void *session;
	bool session_started;

	struct conn *prev, *next;          /* loop->conns */
	struct conn *reap_next;
	struct conn *again_next;
	bool on_reap_list, on_again_list;
	struct conn *wake_next;            /* loop->wake_list, under loop->lock */
	bool wake_queued;                  /* under loop->lock */

	struct buf in;
	struct buf out;
	size_t out_pos;                    /* bytes of out already sent */

	/* COMPRESS=DEFLATE: out and in hold plaintext; zout what goes to the
	 * socket (or TLS), zin what came from it */
	struct conn_compress *cz;
	bool compress_pending;             /* switch the input after this session_input() */
	size_t raw_left;                   /* bytes at out_pos still to go uncompressed */
	struct buf zin, zout;
	size_t zout_pos;

	SSL *ssl;
	bool tls_handshaking, handshake_wants_write;
	bool starttls_pending;
	bool read_wants_write, write_wants_read;

	bool closing, aborted;
	bool closing_notified;             /* session_closing() was called */
	bool peer_gone;                    /* end of stream seen */
	bool job_pending;
	bool registered;
	uint32_t events;

	unsigned timeout_secs;
	uint64_t last_activity_ms;
	uint64_t job_started_ms;
	uint64_t close_deadline_ms;

	char peer[64];
	struct ip_key ip;
};

static void conn_update_events(struct conn *c);
static void conn_process(struct conn *c);

static struct server *conn_server(const struct conn *c)
{
	return c->loop->server;
}

static const struct mf_limits *conn_limits(const struct conn *c)
{
	return &c->loop->server->set.limits;
}

static void schedule_reap(struct conn *c)
{
	if (c->on_reap_list)
		return;
	c->on_reap_list = true;
	c->reap_next = c->loop->reap_list;
	c->loop->reap_list = c;
}

static bool output_pending(const struct conn *c)
{
	return c->out_pos < c->out.len || c->zout_pos < c->zout.len;
}

/* Closing connections are freed once their output is out (or dropped). */
static void maybe_reap(struct conn *c)
{
	if (c->closing && (c->aborted || !output_pending(c)))
		schedule_reap(c);
}

/* Ends the connection without flushing: I/O errors, limits passed. */
static void conn_abort(struct conn *c, const char *reason)
{
	if (c->aborted)
		return;
	if (!c->closing)
		log_info("conn %u (%s, %s): %s", c->id, c->peer, c->listener->name, reason);
	c->closing = c->aborted = true;
	buf_reset(&c->out);
	c->out_pos = 0;
	c->raw_left = 0;
	buf_reset(&c->zout);
	c->zout_pos = 0;
	conn_update_events(c);
	schedule_reap(c);
}

void conn_close(struct conn *c, const char *reason)
{
	if (c->closing)
		return;
	log_debug("conn %u (%s): closing: %s", c->id, c->peer, reason);
	c->closing = true;
	c->close_deadline_ms = mf_now_ms() + CLOSE_FLUSH_SECS * 1000;
	maybe_reap(c);
}

bool conn_is_closing(const struct conn *c)
{
	return c->closing;
}

/* Takes c off the wake list (after session_free(): no new conn_wake()). */
static void wake_unlink(struct conn *c)
{
	struct loop *loop = c->loop;

	pthread_mutex_lock(&loop->lock);
	if (c->wake_queued) {
		struct conn **p = &loop->wake_list;
		while (*p != c)
			p = &(*p)->wake_next;
		*p = c->wake_next;
		c->wake_queued = false;
	}
	pthread_mutex_unlock(&loop->lock);
}

/* The one place a connection is freed. */
static void conn_destroy(struct conn *c)
{
	struct loop *loop = c->loop;

	if (c->session_started)
		c->listener->handler->session_free(c->session);
	wake_unlink(c);
	if (c->ssl != NULL) {
		if (!c->aborted && !c->tls_handshaking && !c->peer_gone)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	if (c->registered)
		epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	server_conn_released(loop->server, &c->ip);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		loop->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	loop->conn_count--;
	buf_free(&c->in);
	buf_free(&c->out);
	conn_compress_free(&c->cz);
	buf_free(&c->zin);
	buf_free(&c->zout);
	free(c);
}

void conn_loop_reap(struct loop *loop)
{
	while (loop->reap_list != NULL) {
		struct conn *c = loop->reap_list;
		loop->reap_list = c->reap_next;
		c->on_reap_list = false;
		/* a job still running keeps the connection; its completion reaps */
		if (c->job_pending)
			continue;
		/* the session's last job (releasing a store lock) runs first */
		if (!c->closing_notified && c->session_started &&
		    c->listener->handler->session_closing != NULL) {
			c->closing_notified = true;
			c->listener->handler->session_closing(c->session, c);
			if (c->job_pending)
				continue;
		}
		if (c->on_again_list) {
			/* unlink from the again list before freeing */
			struct conn **p = &loop->again_list;
			while (*p != c)
				p = &(*p)->again_next;
			*p = c->again_next;
		}
		conn_destroy(c);
	}
}

/* ---- epoll interest ---- */

static bool wants_input(const struct conn *c)
{
	const struct buf *dest = c->cz != NULL ? &c->zin : &c->in;

	return !c->closing && !c->job_pending && !c->starttls_pending &&
		!c->tls_handshaking && dest->len < dest->max;
}

static uint32_t wanted_events(const struct conn *c)
{
	uint32_t want = 0;

	if (c->aborted)
		return 0;
	if (c->tls_handshaking)
		return c->handshake_wants_write ? EPOLLOUT : EPOLLIN;
	if ((wants_input(c) && !c->read_wants_write) || c->write_wants_read)
		want |= EPOLLIN;
	if ((output_pending(c) && !c->write_wants_read) || c->read_wants_write)
		want |= EPOLLOUT;
	return want;
}

static void conn_update_events(struct conn *c)
{
	uint32_t want = wanted_events(c);
	struct epoll_event ev = { .events = want, .data.ptr = c };

	if (want == c->events && (want == 0) == !c->registered)
		return;
	if (want == 0) {
		epoll_ctl(c->loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		c->registered = false;
	} else if (epoll_ctl(c->loop->epfd, c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
			     c->fd, &ev) == 0) {
		c->registered = true;
	} else {
		log_error("conn %u: epoll_ctl: %s", c->id, strerror(errno));
	}
	c->events = want;
}

/* ---- TLS ---- */

static const char *tls_error_text(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *text = e != 0 ? ERR_reason_error_string(e) : NULL;

	return text != NULL ? text : "connection closed";
}

static int tls_start(struct conn *c)
{
	struct tls_ctx *tls = conn_server(c)->set.tls;

	c->ssl = tls != NULL ? tls_ctx_new_ssl(tls) : NULL;
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		conn_abort(c, "TLS not available");
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	c->tls_handshaking = true;
	c->handshake_wants_write = false;
	return 0;
}

/* 1 done, 0 in progress, -1 failed (connection aborted). */
static int tls_handshake(struct conn *c)
{
	int r = SSL_do_handshake(c->ssl);
	char reason[256];

	if (r == 1) {
		c->tls_handshaking = false;
		c->last_activity_ms = mf_now_ms();
		log_debug("conn %u: %s %s", c->id, SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
		return 1;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		c->handshake_wants_write = false;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->handshake_wants_write = true;
		return 0;
	default:
		snprintf(reason, sizeof(reason), "TLS handshake failed: %s", tls_error_text());
		ERR_clear_error();
		conn_abort(c, reason);
		return -1;
	}
}

/* ---- reading and writing ---- */

/* > 0 bytes, 0 end of stream, -1 would block, -2 error (reason set). */
static ssize_t conn_recv(struct conn *c, void *data, size_t len, const char **reason_r)
{
	if (c->ssl == NULL) {
		ssize_t n = read(c->fd, data, len);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return -1;
		if (n < 0)
			*reason_r = strerror(errno);
		return n < 0 ? -2 : n;
	}
	c->read_wants_write = false;
	errno = 0;
	int n = SSL_read(c->ssl, data, (int)MF_MIN(len, (size_t)INT32_MAX));
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		return -1;
	case SSL_ERROR_WANT_WRITE:
		c->read_wants_write = true;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_last_error() == 0 && errno == 0)
			return 0;
		/* fall through */
	default:
		*reason_r = errno != 0 && ERR_peek_last_error() == 0 ? strerror(errno) : tls_error_text();
		ERR_clear_error();
		return -2;
	}
}

static ssize_t conn_send(struct conn *c, const void *data, size_t len, const char **reason_r)
{
	if (c->ssl == NULL) {
		ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return -1;
		if (n < 0)
			*reason_r = strerror(errno);
		return n < 0 ? -2 : n;
	}
	c->write_wants_read = false;
	errno = 0;
	int n = SSL_write(c->ssl, data, (int)MF_MIN(len, (size_t)INT32_MAX));
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
		return -1;
	case SSL_ERROR_WANT_READ:
		c->write_wants_read = true;
		return -1;
	default:
		*reason_r = ERR_peek_last_error() == 0 && errno != 0 ? strerror(errno) : tls_error_text();
		ERR_clear_error();
		return -2;
	}
}

static void output_sent(struct conn *c)
{
	buf_reset(&c->out);
	c->out_pos = 0;
	c->raw_left = 0;
	if (c->out.cap > BUFFER_KEEP_MAX)
		buf_free(&c->out);
	buf_reset(&c->zout);
	c->zout_pos = 0;
	if (c->zout.cap > BUFFER_KEEP_MAX)
		buf_free(&c->zout);
	if (c->starttls_pending) {
		c->starttls_pending = false;
		tls_start(c);
	}
	if (!c->closing && c->session_started && c->listener->handler->session_output_drained != NULL)
		c->listener->handler->session_output_drained(c->session, c);
	maybe_reap(c);
}

/* Deflates the next piece of queued plaintext into zout (empty now); the
 * last piece of what is queued ends with a sync flush. */
static int compress_step(struct conn *c)
{
	size_t left = c->out.len - c->out_pos;
	size_t n = MF_MIN(left, DEFLATE_CHUNK);

	buf_reset(&c->zout);
	c->zout_pos = 0;
	if (conn_compress_deflate(c->cz, c->out.data + c->out_pos, n, n == left, &c->zout) < 0) {
		conn_abort(c, "output compression failed");
		return -1;
	}
	c->out_pos += n;
	return 0;
}

/* The next bytes for the socket: compressed output first, then what must
 * go out as is (the reply before COMPRESS took effect), then plaintext to
 * compress. Returns 0 when nothing is left. */
static size_t next_output(struct conn *c, const unsigned char **data_r, bool *compressed_r)
{
	*compressed_r = c->zout_pos < c->zout.len;
	if (!*compressed_r && c->cz != NULL && c->raw_left == 0 && c->out_pos < c->out.len) {
		if (compress_step(c) < 0)
			return 0;
		*compressed_r = true;
	}
	if (*compressed_r) {
		*data_r = c->zout.data + c->zout_pos;
		return c->zout.len - c->zout_pos;
	}
	*data_r = c->out.data + c->out_pos;
	return c->cz != NULL ? c->raw_left : c->out.len - c->out_pos;
}

/* Sends what the socket takes. -1 when the connection was aborted. */
static int conn_flush(struct conn *c)
{
	const char *reason = NULL;
	char text[200];
	const unsigned char *data;
	bool compressed;
	size_t len;

	if (c->aborted || c->tls_handshaking)
		return c->aborted ? -1 : 0;
	while ((len = next_output(c, &data, &compressed)) > 0) {
		ssize_t n = conn_send(c, data, len, &reason);
		if (n == -1)
			break;
		if (n < 0) {
			snprintf(text, sizeof(text), "write failed: %s", reason);
			conn_abort(c, text);
			return -1;
		}
		if (compressed) {
			c->zout_pos += (size_t)n;
		} else {
			c->out_pos += (size_t)n;
			if (c->cz != NULL)
				c->raw_left -= (size_t)n;
		}
		c->last_activity_ms = mf_now_ms();
	}
	if (c->aborted)
		return -1;
	if (!output_pending(c))
		output_sent(c);
	else if (c->out_pos >= OUTPUT_COMPACT_MIN && c->out_pos >= c->out.len / 2) {
		buf_consume(&c->out, c->out_pos);
		c->out_pos = 0;
	}
	return c->aborted ? -1 : 0;
}

/* Inflates what fits into the input buffer. Bytes produced, or -1 when
 * the compressed input was invalid (the connection is then closing). */
static ssize_t conn_inflate(struct conn *c)
{
	ssize_t total = 0, n;
	const char *error;
	char text[200];

	while ((n = conn_compress_inflate(c->cz, &c->zin, &c->in, &error)) > 0)
		total += n;
	if (n < 0) {
		snprintf(text, sizeof(text), "compressed input: %s", error);
		buf_reset(&c->zin);
		conn_abort(c, text);
		return -1;
	}
	return total;
}

/* COMPRESS took effect: what is buffered after the command is compressed. */
static void compress_switch_input(struct conn *c)
{
	c->compress_pending = false;
	if (c->in.len > 0 && buf_append(&c->zin, c->in.data, c->in.len) < 0)
		abort();   /* zin is empty and at least as large as in */
	buf_reset(&c->in);
}

/* Hands buffered input to the protocol while it can take it. */
static void conn_dispatch(struct conn *c)
{
	const struct proto_handler *h = c->listener->handler;
	bool fresh = true;   /* input the session has not seen yet */

	while (!c->closing && !c->job_pending && !c->starttls_pending) {
		ssize_t got = c->cz != NULL ? conn_inflate(c) : 0;
		if (got < 0)
			return;
		if (c->in.len == 0 || (!fresh && got == 0))
			break;
		size_t before = c->in.len;
		h->session_input(c->session, c);
		if (c->starttls_pending) {
			/* nothing sent in plaintext after STARTTLS may count */
			buf_reset(&c->in);
			break;
		}
		if (c->compress_pending) {
			compress_switch_input(c);
			continue;
		}
		fresh = c->in.len != before;
	}
	if (!c->closing && !c->job_pending && c->in.len >= c->in.max)
		conn_abort(c, "input buffer full (the protocol did not consume a line)");
	if (c->in.len == 0 && c->in.cap > BUFFER_KEEP_MAX)
		buf_free(&c->in);
	conn_flush(c);
}

static void conn_read(struct conn *c)
{
	struct loop *loop = c->loop;
	const char *reason = NULL;
	char text[200];
	struct buf *dest = c->cz != NULL ? &c->zin : &c->in;
	ssize_t n = conn_recv(c, loop->scratch, MF_MIN(sizeof(loop->scratch), dest->max - dest->len),
			      &reason);

	if (n == -1)
		return;
	if (n == 0) {
		c->peer_gone = true;
		conn_close(c, "client disconnected");
		return;
	}
	if (n < 0) {
		snprintf(text, sizeof(text), "read failed: %s", reason);
		conn_abort(c, text);
		return;
	}
	if (buf_append(dest, loop->scratch, (size_t)n) < 0)
		abort();   /* the read was sized to the room left */
	c->last_activity_ms = mf_now_ms();
	conn_dispatch(c);
}

/* TLS may hold decrypted bytes the socket no longer signals. */
static void check_tls_buffered(struct conn *c)
{
	if (c->ssl != NULL && !c->on_again_list && wants_input(c) && SSL_pending(c->ssl) > 0) {
		c->on_again_list = true;
		c->again_next = c->loop->again_list;
		c->loop->again_list = c;
	}
}

static void conn_process(struct conn *c)
{
	if (c->aborted)
		return;
	if (c->tls_handshaking && tls_handshake(c) <= 0)
		goto out;
	if (conn_flush(c) < 0)
		return;
	/* a STARTTLS reply that just went out starts the handshake */
	if (c->tls_handshaking && (tls_handshake(c) <= 0 || conn_flush(c) < 0))
		goto out;
	if (wants_input(c))
		conn_read(c);
out:
	if (!c->aborted) {
		check_tls_buffered(c);
		conn_update_events(c);
	}
}

void conn_handle_event(struct conn *c, uint32_t events)
{
	conn_process(c);
}

void conn_loop_run_again(struct loop *loop)
{
	struct conn *list = loop->again_list;

	loop->again_list = NULL;
	while (list != NULL) {
		struct conn *c = list;
		list = c->again_next;
		c->on_again_list = false;
		conn_process(c);
	}
}

/* ---- accept and timeouts ---- */

void conn_accepted(struct loop *loop, int fd, struct listener *l, const char *peer,
		   const struct ip_key *ip)
{
	struct conn *c = mf_calloc(1, sizeof(*c));
	const struct mf_limits *limits = &loop->server->set.limits;

	c->kind = HANDLE_CONN;
	c->fd = fd;
	c->id = atomic_fetch_add(&loop->server->next_conn_id, 1) + 1;
	c->loop = loop;
	c->listener = l;
	c->ip = *ip;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	buf_init(&c->in, limits->line_max + INPUT_SLACK);
	buf_init(&c->out, limits->output_queue_max);
	c->last_activity_ms = mf_now_ms();
	c->next = loop->conns;
	if (c->next != NULL)
		c->next->prev = c;
	loop->conns = c;
	loop->conn_count++;
	log_debug("conn %u: %s connected to %s", c->id, peer, l->name);
	if (l->config.tls && tls_start(c) < 0)
		return;
	c->session = l->handler->session_new(c);
	c->session_started = true;
	conn_process(c);
}

/* A connection silent for a second or more (an IMAP client in IDLE, say)
 * keeps no empty buffers: with thousands of them that is most of their
 * memory. They come back on the next read or write. */
static void release_idle_buffers(struct conn *c, uint64_t now)
{
	if (now < c->last_activity_ms + 1000)
		return;
	if (c->in.len == 0 && c->in.data != NULL)
		buf_free(&c->in);
	if (!output_pending(c) && c->out.data != NULL) {
		buf_free(&c->out);
		c->out_pos = 0;
	}
	if (c->cz != NULL && !output_pending(c)) {
		/* every batch ended with a sync flush: the next may start afresh */
		conn_compress_release(c->cz);
		buf_free(&c->zout);
		c->zout_pos = 0;
		if (c->zin.len == 0)
			buf_free(&c->zin);
	}
}

void conn_loop_tick(struct loop *loop, uint64_t now)
{
	for (struct conn *c = loop->conns; c != NULL; c = c->next) {
		unsigned secs = c->timeout_secs != 0 ? c->timeout_secs : conn_limits(c)->idle_timeout_secs;

		if (c->aborted || c->job_pending)
			continue;
		/* Timeouts first: a job the tick starts is no sign of life. */
		if (c->closing) {
			if (now >= c->close_deadline_ms)
				conn_abort(c, "output not flushed in time at close");
			continue;
		}
		if (now > c->last_activity_ms &&   /* a flush may be later than now */
		    now - c->last_activity_ms >= (uint64_t)secs * 1000) {
			conn_abort(c, "idle timeout");
			continue;
		}
		if (c->session_started && c->listener->handler->session_tick != NULL) {
			c->listener->handler->session_tick(c->session, c);
			if (conn_flush(c) == 0)
				conn_update_events(c);
		}
		if (!c->aborted && !c->job_pending)
			release_idle_buffers(c, now);
	}
}

void conn_loop_close_all(struct loop *loop, bool force)
{
	for (struct conn *c = loop->conns; c != NULL; c = c->next) {
		if (force && !c->job_pending)
			conn_abort(c, "shutting down");
		else if (!c->job_pending)
			conn_close(c, "shutting down");
	}
}

/* ---- wakes from other threads ---- */

void conn_wake(struct conn *c)
{
	struct loop *loop = c->loop;
	bool post = false;
	uint64_t one = 1;

	pthread_mutex_lock(&loop->lock);
	if (!c->wake_queued) {
		c->wake_queued = true;
		c->wake_next = loop->wake_list;
		post = loop->wake_list == NULL;
		loop->wake_list = c;
	}
	pthread_mutex_unlock(&loop->lock);
	if (post) {
		ssize_t MF_UNUSED w = write(loop->wakefd, &one, sizeof(one));
	}
}

/* One at a time under the lock: a wake for a connection already handled
 * may come in meanwhile and queues it again. */
void conn_loop_wakes(struct loop *loop)
{
	for (;;) {
		pthread_mutex_lock(&loop->lock);
		struct conn *c = loop->wake_list;
		if (c != NULL) {
			loop->wake_list = c->wake_next;
			c->wake_queued = false;
		}
		pthread_mutex_unlock(&loop->lock);
		if (c == NULL)
			return;
		if (c->closing || !c->session_started || c->listener->handler->session_wake == NULL)
			continue;
		c->listener->handler->session_wake(c->session, c);
		if (!c->closing && !c->job_pending)
			conn_flush(c);
		maybe_reap(c);
		if (!c->aborted)
			conn_update_events(c);
	}
}

/* ---- blocking work ---- */

static void job_run(struct worker_job *base)
{
	struct conn_job *job = (struct conn_job *)base;

	job->work(job->arg);
	loop_post_done(job->loop, job);
}

static void job_complete(struct conn_job *job)
{
	struct conn *c = job->conn;

	c->job_pending = false;
	job->done(c->session, c, job->arg);
	free(job);
	/* The job's run time does not count as the client's silence, but a
	 * job (an IDLE poll, say) is no sign of life from the client either. */
	c->last_activity_ms += mf_now_ms() - c->job_started_ms;
	if (c->loop->stopping && !c->closing && !c->job_pending)
		conn_close(c, "shutting down");
	if (!c->closing)
		conn_dispatch(c);
	else
		conn_flush(c);
	maybe_reap(c);
	if (!c->aborted) {
		check_tls_buffered(c);
		conn_update_events(c);
	}
}

void conn_loop_done_jobs(struct loop *loop)
{
	struct conn_job *list;

	pthread_mutex_lock(&loop->lock);
	list = loop->done_head;
	loop->done_head = loop->done_tail = NULL;
	pthread_mutex_unlock(&loop->lock);
	while (list != NULL) {
		struct conn_job *job = list;
		list = job->done_next;
		job_complete(job);
	}
}

void conn_run_blocking(struct conn *c, conn_work_fn *work, conn_done_fn *done, void *arg)
{
	struct conn_job *job;

	if (c->job_pending) {
		log_error("conn %u: a second blocking job while one runs", c->id);
		abort();
	}
	job = mf_calloc(1, sizeof(*job));
	job->base.run = job_run;
	job->loop = c->loop;
	job->conn = c;
	job->work = work;
	job->done = done;
	job->arg = arg;
	c->job_pending = true;
	c->job_started_ms = mf_now_ms();
	worker_pool_submit(conn_server(c)->workers, &job->base);
	conn_update_events(c);
}

/* ---- the API protocol modules use ---- */

struct buf *conn_input(struct conn *c)
{
	return &c->in;
}

int conn_write(struct conn *c, const void *data, size_t len)
{
	if (c->aborted)
		return -1;
	if (buf_append(&c->out, data, len) == 0)
		return 0;
	if (c->out_pos > 0) {
		buf_consume(&c->out, c->out_pos);
		c->out_pos = 0;
		if (buf_append(&c->out, data, len) == 0)
			return 0;
	}
	conn_abort(c, "output queue limit passed (client not reading)");
	return -1;
}

size_t conn_output_room(const struct conn *c)
{
	size_t queued = c->out.len - c->out_pos;

	if (c->aborted)
		return 0;
	if (c->out.max == 0)
		return SIZE_MAX;
	return c->out.max > queued ? c->out.max - queued : 0;
}

int conn_printf(struct conn *c, const char *fmt, ...)
{
	char small[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return conn_write(c, small, (size_t)n);

	char *big = mf_malloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int ret = conn_write(c, big, (size_t)n);
	free(big);
	return ret;
}

int conn_starttls(struct conn *c)
{
	if (c->ssl != NULL || c->starttls_pending || conn_server(c)->set.tls == NULL || c->closing ||
	    c->cz != NULL || c->compress_pending)
		return -1;
	c->starttls_pending = true;
	return 0;
}

int conn_compress(struct conn *c)
{
	if (c->cz != NULL || c->compress_pending || c->starttls_pending || c->tls_handshaking ||
	    c->closing)
		return -1;
	c->cz = conn_compress_new();
	c->raw_left = c->out.len - c->out_pos;
	buf_init(&c->zin, MF_MAX((size_t)ZIN_MAX, c->in.max));
	buf_init(&c->zout, 0);
	c->compress_pending = true;
	return 0;
}

bool conn_is_compressed(const struct conn *c)
{
	return c->cz != NULL;
}

bool conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL && !c->tls_handshaking;
}

bool conn_tls_available(const struct conn *c)
{
	return c->ssl == NULL && !c->starttls_pending && c->loop->server->set.tls != NULL;
}

const char *conn_peer_addr(const struct conn *c)
{
	return c->peer;
}

struct mf_context *conn_context(struct conn *c)
{
	return conn_server(c)->set.context;
}

void conn_set_timeout(struct conn *c, unsigned secs)
{
	c->timeout_secs = secs;
}
