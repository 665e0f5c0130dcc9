/* pop3.c: the POP3 protocol module: the session, its command table and
 * dispatcher, replies, bounded message output and the upkeep of the POP3
 * lock. AUTHORIZATION commands are in pop3-auth.c, TRANSACTION commands
 * and QUIT in pop3-commands.c, the maildrop on the store in pop3-mailbox.c.
 *
 * Input flow: pop3_process_input() feeds conn_input() to the resumable
 * parser and handles one event at a time (PIPELINING); a command that needs
 * the store starts a blocking job and input waits until its done() ran.
 *
 * Output flow for RETR/TOP: the message is read by a job, then converted to
 * the wire form (CRLF, dot-stuffed) in pieces: at most about half the
 * output queue is produced at once, and the next piece only when the
 * frontend reports the queue drained, so a slow client never makes output
 * pile up. Pipelined commands wait until the message is out.
 *
 * The lock: refreshed from the frontend's once-a-second tick every quarter
 * of lock_timeout; released by a last job when the connection closes
 * without QUIT (nothing is deleted then). */
#include "pop3d/pop3-private.h"
#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_AUTH  0x01   /* allowed in AUTHORIZATION */
#define ST_TRANS 0x02   /* allowed in TRANSACTION */

struct pop3_command {
	enum pop3_cmd cmd;
	void (*handler)(struct pop3_session *s, const struct pop3_event *ev);
	unsigned states;
	unsigned min_args, max_args;
};

static const struct pop3_command pop3_commands[] = {
	{ POP3_CMD_CAPA, pop3_cmd_capa, ST_AUTH | ST_TRANS, 0, 0 },
	{ POP3_CMD_STLS, pop3_cmd_stls, ST_AUTH, 0, 0 },
	{ POP3_CMD_USER, pop3_cmd_user, ST_AUTH, 1, 1 },
	{ POP3_CMD_PASS, pop3_cmd_pass, ST_AUTH, 0, 0 },
	{ POP3_CMD_AUTH, pop3_cmd_auth, ST_AUTH, 0, 2 },
	{ POP3_CMD_APOP, pop3_cmd_apop, ST_AUTH, 0, POP3_ARGS_MAX },
	{ POP3_CMD_STAT, pop3_cmd_stat, ST_TRANS, 0, 0 },
	{ POP3_CMD_LIST, pop3_cmd_list, ST_TRANS, 0, 1 },
	{ POP3_CMD_UIDL, pop3_cmd_uidl, ST_TRANS, 0, 1 },
	{ POP3_CMD_RETR, pop3_cmd_retr, ST_TRANS, 1, 1 },
	{ POP3_CMD_TOP, pop3_cmd_top, ST_TRANS, 2, 2 },
	{ POP3_CMD_DELE, pop3_cmd_dele, ST_TRANS, 1, 1 },
	{ POP3_CMD_RSET, pop3_cmd_rset, ST_TRANS, 0, 0 },
	{ POP3_CMD_NOOP, pop3_cmd_noop, ST_TRANS, 0, 0 },
	{ POP3_CMD_QUIT, pop3_cmd_quit, ST_AUTH | ST_TRANS, 0, 0 },
};

void pop3_settings_from_config(const struct mf_config *cfg, struct pop3_settings *set_r)
{
	memset(set_r, 0, sizeof(*set_r));
	set_r->uidl_format = POP3_UIDL_FORMAT_DEFAULT;
	set_r->lock_timeout_secs = 120;
	set_r->require_tls = false;
	if (cfg == NULL)
		return;
	if (cfg->pop3_uidl_format != NULL)
		set_r->uidl_format = cfg->pop3_uidl_format;
	if (cfg->pop3_lock_timeout_secs != 0)
		set_r->lock_timeout_secs = cfg->pop3_lock_timeout_secs;
	set_r->require_tls = cfg->pop3_require_tls;
}

/* ---- replies ---- */

void pop3_write(struct pop3_session *s, const void *data, size_t len)
{
	conn_write(s->conn, data, len);
}

static void pop3_vreply(struct pop3_session *s, const char *prefix, const char *fmt, va_list ap)
{
	char line[512];
	size_t plen = strlen(prefix);
	int n;

	memcpy(line, prefix, plen);
	n = vsnprintf(line + plen, sizeof(line) - plen - 2, fmt, ap);
	if (n < 0)
		return;
	size_t len = MF_MIN(plen + (size_t)n, sizeof(line) - 3);
	memcpy(line + len, "\r\n", 2);
	conn_write(s->conn, line, len + 2);
}

void pop3_ok(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;

	s->bad_commands = 0;
	va_start(ap, fmt);
	pop3_vreply(s, "+OK ", fmt, ap);
	va_end(ap);
}

void pop3_err_nocount(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pop3_vreply(s, "-ERR ", fmt, ap);
	va_end(ap);
}

void pop3_err(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pop3_vreply(s, "-ERR ", fmt, ap);
	va_end(ap);
	s->bad_commands++;
	if (s->limits->bad_commands_max != 0 && s->bad_commands >= s->limits->bad_commands_max) {
		pop3_err_nocount(s, "Too many bad commands, closing connection");
		conn_close(s->conn, "too many bad commands");
	}
}

/* ---- blocking jobs ---- */

struct pop3_job {
	void (*work)(void *arg);
	void (*done)(struct pop3_session *s, void *arg);
	void *arg;
};

static void job_work(void *arg)
{
	struct pop3_job *job = arg;

	job->work(job->arg);
}

static void job_done(void *session, struct conn *conn, void *arg)
{
	struct pop3_job *job = arg;
	struct pop3_session *s = session;

	s->busy = false;
	job->done(s, job->arg);
	free(job);
}

void pop3_run_job(struct pop3_session *s, void (*work)(void *arg),
		  void (*done)(struct pop3_session *s, void *arg), void *arg)
{
	struct pop3_job *job = mf_malloc(sizeof(*job));

	*job = (struct pop3_job){ .work = work, .done = done, .arg = arg };
	s->busy = true;
	conn_run_blocking(s->conn, job_work, job_done, job);
}

/* ---- message output ---- */

static void stream_end(struct pop3_session *s)
{
	s->output = POP3_OUT_NONE;
	mf_free(&s->msg_data);
	mf_free(&s->scratch);
}

static bool stream_fill(struct pop3_session *s, size_t piece, size_t *written_r)
{
	if (s->output == POP3_OUT_MESSAGE)
		return pop3_msg_stream_run(&s->stream, s->scratch, piece, written_r);
	return pop3_listing_fill(s, s->scratch, piece, written_r);
}

/* Fills the output queue up to half its limit; the rest follows when the
 * queue has drained. True when the output is complete (or the connection
 * failed). */
static bool stream_pump(struct pop3_session *s)
{
	size_t keep_free = s->limits->output_queue_max / 2;
	bool done = false;

	while (!done && !conn_is_closing(s->conn)) {
		size_t room = conn_output_room(s->conn), written;
		if (room < keep_free + POP3_PIECE_MIN)
			break;
		done = stream_fill(s, MF_MIN((size_t)POP3_CHUNK, room - keep_free), &written);
		if (conn_write(s->conn, s->scratch, written) < 0)
			break;
	}
	if (done || conn_is_closing(s->conn)) {
		stream_end(s);
		return true;
	}
	return false;
}

void pop3_send_message(struct pop3_session *s, unsigned char *data, size_t len)
{
	s->msg_data = data;
	s->scratch = mf_malloc(POP3_CHUNK);
	s->output = POP3_OUT_MESSAGE;
	pop3_msg_stream_init(&s->stream, data, len);
	stream_pump(s);
}

void pop3_send_listing(struct pop3_session *s, enum pop3_output kind)
{
	s->scratch = mf_malloc(POP3_CHUNK);
	s->output = kind;
	s->list_next = 0;
	stream_pump(s);
}

static void pop3_session_output_drained(void *session, struct conn *conn)
{
	struct pop3_session *s = session;

	if (s->output != POP3_OUT_NONE && stream_pump(s))
		pop3_process_input(s);
}

/* ---- input ---- */

static void pop3_dispatch(struct pop3_session *s, const struct pop3_event *ev)
{
	const struct pop3_command *c = NULL;
	unsigned state = s->state == POP3_STATE_TRANSACTION ? ST_TRANS : ST_AUTH;

	for (size_t i = 0; i < MF_N_ELEMENTS(pop3_commands); i++) {
		if (pop3_commands[i].cmd == ev->cmd && ev->cmd != POP3_CMD_UNKNOWN)
			c = &pop3_commands[i];
	}
	if (c == NULL) {
		pop3_err(s, "Unknown command");
		return;
	}
	if ((c->states & state) == 0) {
		pop3_err(s, "%s is not valid in the %s state", ev->verb,
			 state == ST_AUTH ? "AUTHORIZATION" : "TRANSACTION");
		return;
	}
	if (ev->argc < c->min_args || ev->argc > c->max_args) {
		if (c->min_args == c->max_args && c->max_args == 0)
			pop3_err(s, "%s takes no arguments", ev->verb);
		else
			pop3_err(s, "Wrong number of arguments for %s", ev->verb);
		return;
	}
	c->handler(s, ev);
}

static void pop3_handle_event(struct pop3_session *s, const struct pop3_event *ev)
{
	switch (ev->type) {
	case POP3_EV_NEED_MORE:
		break;
	case POP3_EV_COMMAND:
		pop3_dispatch(s, ev);
		break;
	case POP3_EV_RESPONSE:
		pop3_sasl_response(s, ev);
		break;
	case POP3_EV_LINE_TOO_LONG:
		if (s->sasl_pending)
			pop3_sasl_response(s, NULL);
		else
			pop3_err(s, "Line too long");
		break;
	case POP3_EV_BAD_LINE:
		pop3_err(s, "%s", ev->error);
		break;
	}
}

/* After "+OK Begin TLS negotiation": plaintext input that followed is
 * dropped (no command injection across the switch), the session starts
 * over in the AUTHORIZATION state. */
static void pop3_start_tls(struct pop3_session *s)
{
	struct buf *in = conn_input(s->conn);

	s->starttls_pending = false;
	buf_consume(in, in->len);
	pop3_parser_reset(&s->parser);
	s->user[0] = '\0';
	if (conn_starttls(s->conn) < 0)
		conn_close(s->conn, "STLS failed");
}

void pop3_process_input(struct pop3_session *s)
{
	struct buf *in = conn_input(s->conn);
	struct pop3_event ev;

	if (s->dispatching)
		return;
	s->dispatching = true;
	while (!s->busy && s->output == POP3_OUT_NONE && s->state < POP3_STATE_UPDATE &&
	       !conn_is_closing(s->conn)) {
		pop3_parser_next(&s->parser, in->data, in->len, &ev);
		pop3_handle_event(s, &ev);
		buf_consume(in, ev.consumed);
		if (s->starttls_pending) {
			pop3_start_tls(s);
			break;
		}
		if (ev.type == POP3_EV_NEED_MORE)
			break;
	}
	s->dispatching = false;
}

/* ---- the lock's upkeep ---- */

struct refresh_job {
	struct pop3_mailbox *mbox;
	int ret, err;
};

static void refresh_work(void *arg)
{
	struct refresh_job *job = arg;

	job->ret = pop3_mailbox_refresh_lock(job->mbox);
	job->err = errno;
}

static void refresh_done(struct pop3_session *s, void *arg)
{
	struct refresh_job *job = arg;

	if (job->ret < 0 && (job->err == EPERM || job->err == ENOENT) && !s->lock_lost) {
		s->lock_lost = true;
		log_warn("pop3: %s: the POP3 lock was lost (taken over as stale)", s->info.address);
	}
	free(job);
}

static void pop3_session_tick(void *session, struct conn *conn)
{
	struct pop3_session *s = session;
	uint64_t interval = MF_MAX((uint64_t)s->set.lock_timeout_secs * 1000 / 4, (uint64_t)1000);
	uint64_t now = mf_now_ms();

	if (s->mbox == NULL || s->busy || s->lock_lost || conn_is_closing(conn) ||
	    now - s->lock_refreshed_ms < interval)
		return;
	struct refresh_job *job = mf_calloc(1, sizeof(*job));
	job->mbox = s->mbox;
	s->lock_refreshed_ms = now;
	pop3_run_job(s, refresh_work, refresh_done, job);
}

/* ---- life cycle ---- */

static void close_work(void *arg)
{
	struct pop3_mailbox *mbox = arg;

	pop3_mailbox_close(&mbox);
}

static void close_done(struct pop3_session *s, void *arg)
{
}

/* The connection is going away: a session that did not QUIT releases its
 * lock off the event loop and deletes nothing. */
static void pop3_session_closing(void *session, struct conn *conn)
{
	struct pop3_session *s = session;

	if (s->mbox == NULL || s->busy)
		return;
	struct pop3_mailbox *mbox = s->mbox;
	s->mbox = NULL;
	pop3_run_job(s, close_work, close_done, mbox);
}

static void *pop3_session_new(struct conn *conn)
{
	struct pop3_session *s = mf_calloc(1, sizeof(*s));

	s->conn = conn;
	s->ctx = conn_context(conn);
	s->limits = &s->ctx->config->limits;
	pop3_settings_from_config(s->ctx->config, &s->set);
	pop3_parser_init(&s->parser, s->limits->line_max);
	s->state = POP3_STATE_AUTHORIZATION;
	pop3_ok(s, "mailfleet POP3 ready");
	return s;
}

static void pop3_session_input(void *session, struct conn *conn)
{
	pop3_process_input(session);
}

static void pop3_session_free(void *session)
{
	struct pop3_session *s = session;

	if (s == NULL)
		return;
	/* normally released by pop3_session_closing(); this is the fallback */
	pop3_mailbox_close(&s->mbox);
	pop3_prefetch_clear(s);
	stream_end(s);
	explicit_bzero(s->user, sizeof(s->user));
	free(s);
}

const struct proto_handler pop3_handler = {
	.name = "pop3",
	.session_new = pop3_session_new,
	.session_input = pop3_session_input,
	.session_free = pop3_session_free,
	.session_output_drained = pop3_session_output_drained,
	.session_tick = pop3_session_tick,
	.session_closing = pop3_session_closing,
};
