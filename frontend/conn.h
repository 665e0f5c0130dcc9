/* conn.h: what a protocol module (lmtpd, imapd, pop3d) sees of a client
 * connection. The frontend owns sockets, TLS, event loops, timeouts and
 * limits; a protocol module owns only its session state and parsing.
 *
 * Life cycle: session_new() when accepted (queue the greeting there);
 * session_input() whenever bytes arrived in conn_input() (parse what is
 * complete, buf_consume() it, leave partial input for the next call);
 * session_free() exactly once, when the connection is gone. Handlers never
 * free the connection: they call conn_close() and the loop reaps it after
 * the current pass. All handler calls happen on the connection's loop thread. */
#ifndef MF_CONN_H
#define MF_CONN_H

#include "lib/buf.h"
#include "frontend/config.h"

struct conn;
struct store;
struct directory;
struct mailbox_watch;

/* The per-process context built in main. */
struct mf_context {
	const struct mf_config *config;
	struct store *store;
	struct directory *directory;
	const char *hostname;
	/* The registry of mailboxes idling sessions watch (store/mailbox-watch.h);
	 * NULL when the process has none. */
	struct mailbox_watch *watch;
	/* When IMAP idlers last gave freed memory back (ms; atomic). */
	uint64_t idle_trim_ms;
	bool idle_trim_pending;
};

struct proto_handler {
	const char *name;
	void *(*session_new)(struct conn *conn);
	void (*session_input)(void *session, struct conn *conn);
	void (*session_free)(void *session);
	/* Optional (NULL = not used). Called once per second on the loop
	 * thread while no blocking job runs and the connection is not closing
	 * (IMAP IDLE polls the store from it). */
	void (*session_tick)(void *session, struct conn *conn);
	/* Optional. Called when the output queue has been flushed completely,
	 * so a module streaming a large response can queue its next piece. */
	void (*session_output_drained)(void *session, struct conn *conn);
	/* Optional. The connection is about to be freed (closed by either
	 * side, no job running): the session may start one last
	 * conn_run_blocking() job (POP3 releases its lock on the store there);
	 * session_free() follows after that job's done(). */
	void (*session_closing)(void *session, struct conn *conn);
	/* Optional. Runs on the loop thread soon after conn_wake(), unless the
	 * connection is closing (also while a blocking job runs: the session
	 * then decides what to do after it). */
	void (*session_wake)(void *session, struct conn *conn);
};

struct buf *conn_input(struct conn *conn);
/* Queues output. Returns -1 when the output queue limit is passed: the
 * connection is then closed and the caller should stop producing output. */
int conn_write(struct conn *conn, const void *data, size_t len);
int conn_printf(struct conn *conn, const char *fmt, ...) MF_PRINTF(2, 3);
/* Bytes conn_write() can still queue before the output queue limit (for
 * sessions that produce long output in pieces). */
size_t conn_output_room(const struct conn *conn);
/* Closes after queued output is flushed (bounded by a short timeout). */
void conn_close(struct conn *conn, const char *reason);
bool conn_is_closing(const struct conn *conn);

/* STARTTLS: call right after queueing the "go ahead" reply. The handshake
 * starts once that reply is flushed; input already buffered in plaintext is
 * discarded (no command injection across the switch). -1 if TLS is not
 * configured or already active. */
int conn_starttls(struct conn *conn);
bool conn_is_tls(const struct conn *conn);
bool conn_tls_available(const struct conn *conn);

/* COMPRESS=DEFLATE (RFC 4978; frontend/conn-compress.h): call from
 * session_input() right after queueing the tagged OK and consuming the
 * command line, then return without parsing further input. Everything
 * queued before goes out as is; all later output is deflated (under TLS
 * when TLS is on), and all later input, including what is already
 * buffered after the command, is inflated before session_input() sees it,
 * still within the input buffer's limit. Invalid compressed input closes
 * the connection. -1 when compression is already on, or a STARTTLS is
 * under way; STARTTLS after COMPRESS is refused (conn_starttls() -1). */
int conn_compress(struct conn *conn);
bool conn_is_compressed(const struct conn *conn);

const char *conn_peer_addr(const struct conn *conn);   /* "127.0.0.1" or "unix" */
struct mf_context *conn_context(struct conn *conn);
/* Seconds of silence from the client before the connection is closed. */
void conn_set_timeout(struct conn *conn, unsigned secs);

/* Runs work(arg) on the worker pool (it may block on the NAS). Input is not
 * dispatched to the session while the job runs. Then done(session, conn, arg)
 * runs on the loop thread: also when the connection was closed meanwhile
 * (conn_is_closing() tells), so arg can always be released there. Only then
 * is session_free() called. */
typedef void conn_work_fn(void *arg);
typedef void conn_done_fn(void *session, struct conn *conn, void *arg);
void conn_run_blocking(struct conn *conn, conn_work_fn *work, conn_done_fn *done, void *arg);

/* Thread-safe: asks the connection's loop to call session_wake() soon.
 * Several calls before that collapse into one. The caller must know conn
 * is alive during the call: session_free() must withdraw whatever leads
 * to calls (e.g. remove a mailbox watcher, which waits for the registry's
 * lock) before it returns. */
void conn_wake(struct conn *conn);

/* Notes by the frontend (implementation in frontend/conn.c):
 * - conn_input()'s buffer holds at most limits.line_max + 16 KiB; when it is
 *   full and session_input() consumed nothing, the connection is dropped, so
 *   a protocol must reject an overlong line itself before that.
 * - conn_set_timeout(conn, 0) goes back to limits.idle_timeout. The timeout
 *   does not run while a conn_run_blocking() job is pending.
 * - One blocking job per connection at a time (a second one aborts).
 * - session_input() is called again after a job's done() when input is
 *   still buffered (pipelining), also when no new bytes arrived. */

#endif
