/* lmtp.c: the LMTP protocol module (RFC 2033 over the RFC 5321 grammar,
 * with SIZE, 8BITMIME, PIPELINING, ENHANCEDSTATUSCODES and STARTTLS): the
 * session, its command table and dispatcher, and the DATA phase. RCPT
 * checks and the delivery itself are in lmtp-delivery.c.
 *
 * Line endings: messages are stored with LF line ends, as Unix maildir tools
 * expect (CRLF from the wire becomes LF; a bare LF stays; a CR not followed
 * by LF is kept). The S= size in the file name is the stored size; IMAP
 * reports sizes with CRLF and accounts for that itself. The added headers
 * (Return-Path, Delivered-To) use LF too.
 *
 * Input flow: lmtp_process_input() feeds conn_input() to the resumable
 * parser and handles one event at a time; a command that needs the store
 * (RCPT with a quota or +folder, the delivery after DATA) starts a blocking
 * job, input waits, and the job's done() continues with whatever pipelined
 * input is still buffered. */
#include "lmtpd/lmtp-private.h"
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define CMD_NEED_LHLO 0x01
#define CMD_NEED_MAIL 0x02
#define CMD_NEED_ARG  0x04
#define CMD_NO_ARG    0x08

struct lmtp_command {
	enum lmtp_cmd cmd;
	void (*handler)(struct lmtp_session *s, const char *arg, size_t arg_len);
	unsigned flags;
};

static const char *lmtp_hostname(const struct lmtp_session *s)
{
	if (s->ctx->hostname != NULL)
		return s->ctx->hostname;
	if (s->ctx->config != NULL && s->ctx->config->hostname != NULL)
		return s->ctx->config->hostname;
	return "localhost";
}

static void lmtp_vreply(struct lmtp_session *s, const char *fmt, va_list ap)
{
	char line[1024];
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	memcpy(line + n, "\r\n", 2);
	conn_write(s->conn, line, (size_t)n + 2);
}

void lmtp_reply(struct lmtp_session *s, const char *fmt, ...)
{
	va_list ap;

	if (fmt[0] == '2' || fmt[0] == '3')
		s->bad_commands = 0;
	va_start(ap, fmt);
	lmtp_vreply(s, fmt, ap);
	va_end(ap);
}

void lmtp_reply_error(struct lmtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lmtp_vreply(s, fmt, ap);
	va_end(ap);
	s->bad_commands++;
	if (s->limits->bad_commands_max != 0 && s->bad_commands >= s->limits->bad_commands_max) {
		lmtp_reply(s, "421 4.7.0 %s Too many errors, closing connection",
			   lmtp_hostname(s));
		conn_close(s->conn, "too many bad commands");
	}
}

void lmtp_txn_reset(struct lmtp_txn *txn)
{
	unsigned i;

	for (i = 0; i < txn->rcpt_count; i++) {
		mf_free(&txn->rcpts[i].address);
		mf_free(&txn->rcpts[i].targets);
	}
	for (i = 0; i < txn->target_count; i++) {
		mf_free(&txn->targets[i].localpart);
		mf_free(&txn->targets[i].domain);
		mf_free(&txn->targets[i].folder);
		mf_free(&txn->targets[i].basename);
		mf_free(&txn->targets[i].error);
	}
	mf_free(&txn->rcpts);
	mf_free(&txn->targets);
	mf_free(&txn->sender);
	buf_free(&txn->message);
	memset(txn, 0, sizeof(*txn));
}

static void lmtp_make_queue_id(struct lmtp_session *s, char *out)
{
	uint8_t rnd[LMTP_QUEUE_ID_LEN / 2];
	unsigned i;

	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
		uint64_t v = mf_now_us() ^ (uint64_t)(uintptr_t)s;

		for (i = 0; i < sizeof(rnd); i++)
			rnd[i] = (uint8_t)(v >> (8 * i));
	}
	for (i = 0; i < sizeof(rnd); i++)
		sprintf(out + 2 * i, "%02X", rnd[i]);
}

static void cmd_lhlo(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	bool tls = conn_tls_available(s->conn) && !conn_is_tls(s->conn);

	lmtp_txn_reset(&s->txn);
	s->lhlo_done = true;
	lmtp_reply(s, "250-%s", lmtp_hostname(s));
	lmtp_reply(s, "250-PIPELINING");
	lmtp_reply(s, "250-ENHANCEDSTATUSCODES");
	lmtp_reply(s, "250-8BITMIME");
	if (tls)
		lmtp_reply(s, "250-STARTTLS");
	lmtp_reply(s, "250 SIZE %zu", s->limits->message_size_max);
}

static void cmd_helo(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	lmtp_reply_error(s, "500 5.5.1 This is LMTP: use LHLO (RFC 2033)");
}

static void cmd_mail(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	struct lmtp_mail_args args;
	const char *error;

	if (s->txn.active) {
		lmtp_reply_error(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	switch (lmtp_parse_mail(arg, arg_len, &args, &error)) {
	case LMTP_ARG_OK:
		break;
	case LMTP_ARG_PARAM_UNKNOWN:
		lmtp_reply_error(s, "555 5.5.4 %s", error);
		return;
	default:
		lmtp_reply_error(s, "501 5.5.4 %s", error);
		return;
	}
	if (args.size_given && args.size > s->limits->message_size_max) {
		lmtp_reply(s, "552 5.3.4 Message size exceeds fixed limit of %zu bytes",
			   s->limits->message_size_max);
		return;
	}
	s->txn.active = true;
	s->txn.sender = mf_strdup(args.path.address);
	s->txn.size_given = args.size_given;
	s->txn.size = args.size;
	lmtp_make_queue_id(s, s->txn.queue_id);
	lmtp_reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	struct lmtp_path path;
	const char *error;

	switch (lmtp_parse_rcpt(arg, arg_len, &path, &error)) {
	case LMTP_ARG_OK:
		lmtp_rcpt_begin(s, &path);
		return;
	case LMTP_ARG_PARAM_UNKNOWN:
		lmtp_reply_error(s, "555 5.5.4 %s", error);
		return;
	default:
		lmtp_reply_error(s, "501 5.5.4 %s", error);
		return;
	}
}

static void cmd_data(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	if (s->txn.rcpt_count == 0) {
		lmtp_reply_error(s, "503 5.5.1 No valid recipients");
		return;
	}
	buf_init(&s->txn.message, s->limits->message_size_max);
	s->txn.too_big = false;
	lmtp_parser_begin_data(&s->parser);
	conn_set_timeout(s->conn, s->limits->data_timeout_secs);
	lmtp_reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

static void cmd_rset(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	lmtp_txn_reset(&s->txn);
	lmtp_reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	lmtp_reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	lmtp_reply(s, "221 2.0.0 %s closing connection", lmtp_hostname(s));
	conn_close(s->conn, "QUIT");
}

static void cmd_vrfy(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	lmtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_help(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	lmtp_reply(s, "214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP%s",
		   conn_tls_available(s->conn) ? " STARTTLS" : "");
}

static void cmd_starttls(struct lmtp_session *s, const char *arg, size_t arg_len)
{
	if (conn_is_tls(s->conn)) {
		lmtp_reply_error(s, "503 5.5.1 TLS already active");
		return;
	}
	if (s->txn.active) {
		lmtp_reply_error(s, "503 5.5.1 STARTTLS not allowed inside a transaction");
		return;
	}
	if (!conn_tls_available(s->conn)) {
		lmtp_reply(s, "454 4.7.0 TLS not available");
		return;
	}
	lmtp_reply(s, "220 2.0.0 Ready to start TLS");
	s->starttls_pending = true;
}

static const struct lmtp_command lmtp_commands[] = {
	{ LMTP_CMD_LHLO, cmd_lhlo, CMD_NEED_ARG },
	{ LMTP_CMD_HELO, cmd_helo, 0 },
	{ LMTP_CMD_EHLO, cmd_helo, 0 },
	{ LMTP_CMD_MAIL, cmd_mail, CMD_NEED_LHLO | CMD_NEED_ARG },
	{ LMTP_CMD_RCPT, cmd_rcpt, CMD_NEED_LHLO | CMD_NEED_MAIL | CMD_NEED_ARG },
	{ LMTP_CMD_DATA, cmd_data, CMD_NEED_LHLO | CMD_NEED_MAIL | CMD_NO_ARG },
	{ LMTP_CMD_RSET, cmd_rset, CMD_NO_ARG },
	{ LMTP_CMD_NOOP, cmd_noop, 0 },
	{ LMTP_CMD_QUIT, cmd_quit, CMD_NO_ARG },
	{ LMTP_CMD_VRFY, cmd_vrfy, CMD_NEED_ARG },
	{ LMTP_CMD_HELP, cmd_help, 0 },
	{ LMTP_CMD_STARTTLS, cmd_starttls, CMD_NO_ARG },
};

static void lmtp_dispatch(struct lmtp_session *s, const struct lmtp_event *ev)
{
	const struct lmtp_command *c = NULL;
	unsigned i;

	for (i = 0; i < MF_N_ELEMENTS(lmtp_commands); i++) {
		if (lmtp_commands[i].cmd == ev->cmd && ev->cmd != LMTP_CMD_UNKNOWN)
			c = &lmtp_commands[i];
	}
	if (c == NULL) {
		lmtp_reply_error(s, "500 5.5.2 Unknown command");
		return;
	}
	if ((c->flags & CMD_NEED_LHLO) != 0 && !s->lhlo_done) {
		lmtp_reply_error(s, "503 5.5.1 Send LHLO first");
		return;
	}
	if ((c->flags & CMD_NEED_MAIL) != 0 && !s->txn.active) {
		lmtp_reply_error(s, "503 5.5.1 Send MAIL FROM first");
		return;
	}
	if ((c->flags & CMD_NEED_ARG) != 0 && ev->arg_len == 0) {
		lmtp_reply_error(s, "501 5.5.4 Argument required");
		return;
	}
	if ((c->flags & CMD_NO_ARG) != 0 && ev->arg_len != 0) {
		lmtp_reply_error(s, "501 5.5.4 No arguments allowed");
		return;
	}
	c->handler(s, ev->arg, ev->arg_len);
}

static void lmtp_data_end(struct lmtp_session *s)
{
	conn_set_timeout(s->conn, s->limits->idle_timeout_secs);
	if (s->txn.too_big) {
		lmtp_reject_too_big(s);
		lmtp_txn_reset(&s->txn);
		return;
	}
	lmtp_deliver_begin(s);
}

static void lmtp_handle_event(struct lmtp_session *s, const struct lmtp_event *ev)
{
	switch (ev->type) {
	case LMTP_EV_NEED_MORE:
		break;
	case LMTP_EV_COMMAND:
		lmtp_dispatch(s, ev);
		break;
	case LMTP_EV_DATA:
		if (!s->txn.too_big &&
		    buf_append(&s->txn.message, ev->data, ev->data_len) < 0) {
			/* read to the end, keep nothing */
			s->txn.too_big = true;
			buf_free(&s->txn.message);
		}
		break;
	case LMTP_EV_DATA_END:
		lmtp_data_end(s);
		break;
	case LMTP_EV_LINE_TOO_LONG:
		lmtp_reply_error(s, "500 5.5.2 Line too long");
		break;
	case LMTP_EV_BAD_LINE:
		lmtp_reply_error(s, "500 5.5.2 %s", ev->error);
		break;
	}
}

/* After "220 Ready to start TLS": plaintext input that followed is dropped
 * (no command injection across the switch) and the session starts over. */
static void lmtp_start_tls(struct lmtp_session *s)
{
	struct buf *in = conn_input(s->conn);

	s->starttls_pending = false;
	buf_consume(in, in->len);
	lmtp_parser_reset(&s->parser);
	lmtp_txn_reset(&s->txn);
	s->lhlo_done = false;
	if (conn_starttls(s->conn) < 0)
		conn_close(s->conn, "STARTTLS failed");
}

void lmtp_process_input(struct lmtp_session *s)
{
	struct buf *in = conn_input(s->conn);
	struct lmtp_event ev;

	if (s->dispatching)
		return;
	s->dispatching = true;
	while (!s->busy && !conn_is_closing(s->conn)) {
		lmtp_parser_next(&s->parser, in->data, in->len, &ev);
		lmtp_handle_event(s, &ev);
		buf_consume(in, ev.consumed);
		if (s->starttls_pending) {
			lmtp_start_tls(s);
			break;
		}
		if (ev.type == LMTP_EV_NEED_MORE)
			break;
	}
	s->dispatching = false;
}

static void *lmtp_session_new(struct conn *conn)
{
	struct lmtp_session *s = mf_calloc(1, sizeof(*s));

	s->conn = conn;
	s->ctx = conn_context(conn);
	s->limits = &s->ctx->config->limits;
	lmtp_parser_init(&s->parser, s->limits->line_max);
	lmtp_reply(s, "220 %s mailfleet LMTP ready", lmtp_hostname(s));
	return s;
}

static void lmtp_session_input(void *session, struct conn *conn)
{
	lmtp_process_input(session);
}

static void lmtp_session_free(void *session)
{
	struct lmtp_session *s = session;

	if (s == NULL)
		return;
	lmtp_txn_reset(&s->txn);
	mf_free(&s);
}

const struct proto_handler lmtp_handler = {
	.name = "lmtp",
	.session_new = lmtp_session_new,
	.session_input = lmtp_session_input,
	.session_free = lmtp_session_free,
};
