/* imap-session.c: the IMAP session: greeting, the input loop over the
 * resumable parser (literals, pipelining, raw lines for AUTHENTICATE and
 * IDLE), the command table and its state checks, responses, and the job
 * machinery that runs store work off the loop and sends its output in
 * bounded pieces (see imap-private.h). */
#include "imapd/imap-private.h"
#include "imapd/imap-quote.h"
#include "imapd/imap-utf7.h"
#include "store/mailbox-watch.h"
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CMD_NOAUTH   0x01   /* allowed before login */
#define CMD_AUTH     0x02   /* allowed after login */
#define CMD_SELECTED 0x04   /* needs a selected mailbox */
#define CMD_ANY      (CMD_NOAUTH | CMD_AUTH)

struct imap_command_def {
	const char *name;
	imap_cmd_fn *handler;
	unsigned flags;
};

static const struct imap_command_def imap_commands[] = {
	{ "CAPABILITY", imap_cmd_capability, CMD_ANY },
	{ "NOOP", imap_cmd_noop, CMD_ANY },
	{ "LOGOUT", imap_cmd_logout, CMD_ANY },
	{ "LOGIN", imap_cmd_login, CMD_NOAUTH },
	{ "AUTHENTICATE", imap_cmd_authenticate, CMD_NOAUTH },
	{ "STARTTLS", imap_cmd_starttls, CMD_NOAUTH },
	{ "ID", imap_cmd_id, CMD_ANY },
	{ "ENABLE", imap_cmd_enable, CMD_AUTH },
	{ "NAMESPACE", imap_cmd_namespace, CMD_AUTH },
	{ "LIST", imap_cmd_list, CMD_AUTH },
	{ "LSUB", imap_cmd_lsub, CMD_AUTH },
	{ "CREATE", imap_cmd_create, CMD_AUTH },
	{ "DELETE", imap_cmd_delete, CMD_AUTH },
	{ "RENAME", imap_cmd_rename, CMD_AUTH },
	{ "SUBSCRIBE", imap_cmd_subscribe, CMD_AUTH },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, CMD_AUTH },
	{ "STATUS", imap_cmd_status, CMD_AUTH },
	{ "SELECT", imap_cmd_select, CMD_AUTH },
	{ "EXAMINE", imap_cmd_examine, CMD_AUTH },
	{ "APPEND", imap_cmd_append, CMD_AUTH },
	{ "IDLE", imap_cmd_idle, CMD_AUTH },
	{ "COMPRESS", imap_cmd_compress, CMD_AUTH },
	{ "CLOSE", imap_cmd_close, CMD_AUTH | CMD_SELECTED },
	{ "UNSELECT", imap_cmd_unselect, CMD_AUTH | CMD_SELECTED },
	{ "CHECK", imap_cmd_check, CMD_AUTH | CMD_SELECTED },
	{ "EXPUNGE", imap_cmd_expunge, CMD_AUTH | CMD_SELECTED },
	{ "UID EXPUNGE", imap_cmd_expunge, CMD_AUTH | CMD_SELECTED },
	{ "FETCH", imap_cmd_fetch, CMD_AUTH | CMD_SELECTED },
	{ "UID FETCH", imap_cmd_fetch, CMD_AUTH | CMD_SELECTED },
	{ "STORE", imap_cmd_store, CMD_AUTH | CMD_SELECTED },
	{ "UID STORE", imap_cmd_store, CMD_AUTH | CMD_SELECTED },
	{ "COPY", imap_cmd_copy, CMD_AUTH | CMD_SELECTED },
	{ "UID COPY", imap_cmd_copy, CMD_AUTH | CMD_SELECTED },
	{ "MOVE", imap_cmd_move, CMD_AUTH | CMD_SELECTED },
	{ "UID MOVE", imap_cmd_move, CMD_AUTH | CMD_SELECTED },
	{ "SEARCH", imap_cmd_search, CMD_AUTH | CMD_SELECTED },
	{ "UID SEARCH", imap_cmd_search, CMD_AUTH | CMD_SELECTED },
	{ "GETQUOTAROOT", imap_cmd_getquotaroot, CMD_AUTH },
	{ "GETQUOTA", imap_cmd_getquota, CMD_AUTH },
	{ "SETQUOTA", imap_cmd_setquota, CMD_AUTH },
};

/* ---- output ---- */

void imap_write(struct imap_session *s, const void *data, size_t len)
{
	conn_write(s->conn, data, len);
}

static void imap_vprintf(struct imap_session *s, const char *fmt, va_list ap)
{
	char line[2048];
	int n = vsnprintf(line, sizeof(line), fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	conn_write(s->conn, line, (size_t)n);
}

void imap_printf(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	imap_vprintf(s, fmt, ap);
	va_end(ap);
}

void imap_tagged(struct imap_session *s, const char *tag, const char *fmt, ...)
{
	va_list ap;

	s->bad_commands = 0;
	imap_printf(s, "%s ", tag);
	va_start(ap, fmt);
	imap_vprintf(s, fmt, ap);
	va_end(ap);
	imap_write(s, "\r\n", 2);
}

void imap_bad(struct imap_session *s, const char *tag, const char *fmt, ...)
{
	va_list ap;

	imap_printf(s, "%s BAD ", tag != NULL ? tag : "*");
	va_start(ap, fmt);
	imap_vprintf(s, fmt, ap);
	va_end(ap);
	imap_write(s, "\r\n", 2);
	s->bad_commands++;
	if (s->limits->bad_commands_max != 0 && s->bad_commands >= s->limits->bad_commands_max) {
		imap_printf(s, "* BYE Too many invalid commands\r\n");
		conn_close(s->conn, "too many bad commands");
	}
}

void imap_capabilities(struct imap_session *s, struct buf *out)
{
	buf_printf(out, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CONDSTORE QRESYNC"
		   " CHILDREN SPECIAL-USE LIST-EXTENDED STATUS=SIZE APPENDLIMIT=%zu",
		   s->limits->message_size_max);
	buf_printf(out, " ESEARCH LIST-STATUS CREATE-SPECIAL-USE QUOTA QUOTA=RES-STORAGE");
	buf_printf(out, " IMAP4rev2 SEARCHRES BINARY");
	if (s->ctx->config->imap_utf8_accept)
		buf_printf(out, " UTF8=ACCEPT");
	if (s->state == IMAP_STATE_NOAUTH) {
		if (conn_tls_available(s->conn))
			buf_printf(out, " STARTTLS");
		if (imap_login_disabled(s))
			buf_printf(out, " LOGINDISABLED");
		else
			buf_printf(out, " AUTH=PLAIN");
	}
	/* COMPRESS is a command of the authenticated state (RFC 4978) */
	if (s->state != IMAP_STATE_NOAUTH && s->ctx->config->imap_compress)
		buf_printf(out, " COMPRESS=DEFLATE");
}

unsigned imap_auth_timeout(const struct imap_session *s)
{
	return MF_MAX(s->limits->idle_timeout_secs, IMAP_AUTH_TIMEOUT_SECS);
}

bool imap_mailbox_name(const struct imap_arg *arg, char *name, size_t size)
{
	const char *str;

	if (!imap_arg_get_astring(arg, &str) || strlen(str) >= size || str[0] == '\0')
		return false;
	if (strcasecmp(str, "INBOX") == 0) {
		snprintf(name, size, "INBOX");
		return true;
	}
	if (!imap_utf7_is_valid(str) || !store_folder_name_valid(str))
		return false;
	snprintf(name, size, "%s", str);
	return true;
}

/* ---- jobs ---- */

struct imap_job *imap_job_new(struct imap_session *s, const char *tag, imap_work_fn *work)
{
	struct imap_job *job = mf_calloc(1, sizeof(*job));

	job->s = s;
	snprintf(job->tag, sizeof(job->tag), "%s", tag);
	job->work = work;
	buf_init(&job->out, 0);
	return job;
}

static void job_free(struct imap_job **jobp)
{
	struct imap_job *job = *jobp;

	if (job == NULL)
		return;
	if (job->data_free != NULL)
		job->data_free(job->data);
	buf_free(&job->out);
	mf_free(jobp);
}

static void job_work(void *arg)
{
	struct imap_job *job = arg;

	job->work(job);
}

static void output_pump(struct imap_session *s);

static void job_done(void *session, struct conn *conn, void *arg)
{
	struct imap_session *s = session;
	struct imap_job *job = arg;

	s->job_running = false;
	imap_notify_end(s);
	if (conn_is_closing(conn)) {
		job_free(&s->job);
		return;
	}
	if (job->finish != NULL)
		job->finish(job);
	s->out_pos = 0;
	output_pump(s);
}

void imap_job_start(struct imap_job *job)
{
	struct imap_session *s = job->s;

	s->job = job;
	s->job_running = true;
	conn_run_blocking(s->conn, job_work, job_done, job);
}

/* Queues the job's output a piece at a time (the next piece when the
 * connection reports its queue drained), then ends or repeats the job. */
static void output_pump(struct imap_session *s)
{
	struct imap_job *job = s->job;
	bool queued = false;

	while (job != NULL && !conn_is_closing(s->conn)) {
		if (s->out_pos < job->out.len) {
			/* what the queue takes now, keeping room for the short
			 * replies that follow; the rest when it has drained */
			size_t room = conn_output_room(s->conn);
			size_t left = job->out.len - s->out_pos;
			size_t n = MF_MIN(MF_MIN(IMAP_OUT_CHUNK, left),
					  room - MF_MIN(IMAP_OUT_RESERVE, room / 2));
			if (n == 0)
				return;
			if (conn_write(s->conn, job->out.data + s->out_pos, n) < 0)
				return;
			s->out_pos += n;
			queued = true;
			if (n < left && n < IMAP_OUT_CHUNK)
				return;
			continue;
		}
		if (queued && job->more)
			return;   /* the next batch once this one is out */
		buf_reset(&job->out);
		s->out_pos = 0;
		if (job->more) {
			job->more = false;
			imap_job_start(job);
			return;
		}
		job_free(&s->job);
		imap_process_input(s);
		return;
	}
}

/* ---- input ---- */

static const struct imap_command_def *command_find(const char *name)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(imap_commands); i++) {
		if (strcmp(imap_commands[i].name, name) == 0)
			return &imap_commands[i];
	}
	return NULL;
}

/* Quoted strings may carry UTF-8 once the client enabled it, and then
 * only well-formed UTF-8 (RFC 6855 3, RFC 9051 9 QUOTED-CHAR). */
static bool quoted_utf8_valid(const struct imap_arg *args)
{
	for (const struct imap_arg *a = args; a->type != IMAP_ARG_EOL; a++) {
		if (a->type == IMAP_ARG_LIST && !quoted_utf8_valid(a->list))
			return false;
		if (a->type == IMAP_ARG_STRING && !imap_utf8_valid(a->str, a->len))
			return false;
	}
	return true;
}

static void dispatch(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_command_def *def = command_find(cmd->name);

	if ((s->utf8_accept || s->imap4rev2) && !quoted_utf8_valid(cmd->args)) {
		imap_bad(s, cmd->tag, "Invalid UTF-8 in a quoted string");
		return;
	}
	if (def == NULL) {
		imap_bad(s, cmd->tag, "Unknown command");
		return;
	}
	if (s->state == IMAP_STATE_NOAUTH && (def->flags & CMD_NOAUTH) == 0) {
		imap_bad(s, cmd->tag, "Log in first");
		return;
	}
	if (s->state != IMAP_STATE_NOAUTH && (def->flags & CMD_AUTH) == 0) {
		imap_bad(s, cmd->tag, "Already logged in");
		return;
	}
	if ((def->flags & CMD_SELECTED) != 0 && s->state != IMAP_STATE_SELECTED) {
		imap_bad(s, cmd->tag, "No mailbox selected");
		return;
	}
	def->handler(s, cmd);
}

static void append_reset(struct imap_session *s)
{
	buf_free(&s->append_data);
	s->append_streaming = false;
	s->append_too_big = false;
}

static void on_command(struct imap_session *s)
{
	const struct imap_command *cmd = imap_parser_command(s->parser);

	imap_notify_begin(s, cmd);
	if (s->append_streaming) {
		if (strcmp(cmd->name, "APPEND") == 0 && !s->append_too_big)
			imap_append_run(s, cmd, s->append_data.data, s->append_data.len);
		else
			imap_tagged(s, cmd->tag, "NO [TOOBIG] Message too large");
		append_reset(s);
		return;
	}
	dispatch(s, cmd);
}

static void on_literal(struct imap_session *s)
{
	const struct imap_literal_info *info = imap_parser_literal_info(s->parser);
	const struct imap_command *cmd = imap_parser_command(s->parser);
	const char *tag = imap_parser_tag(s->parser), *error;

	if (imap_append_literal_is_message(cmd, info->depth)) {
		if (info->size > s->limits->message_size_max) {
			bool fatal = imap_parser_literal_reject(s->parser);
			imap_tagged(s, tag, "NO [TOOBIG] Message larger than APPENDLIMIT");
			if (fatal)
				conn_close(s->conn, "APPEND literal over the limit");
			return;
		}
		if (imap_parser_literal_stream(s->parser, &error) < 0) {
			imap_bad(s, tag, "%s", error);
			return;
		}
		append_reset(s);
		buf_init(&s->append_data, (size_t)info->size);
		s->append_streaming = true;
	} else if (imap_parser_literal_accept(s->parser, &error) < 0) {
		imap_bad(s, tag, "%s", error);
		if (!info->sync)
			conn_close(s->conn, "literal over the limit");
		return;
	}
	if (info->sync)
		imap_write(s, "+ OK\r\n", 6);
}

static void on_literal_data(struct imap_session *s)
{
	const void *data;
	size_t size;
	bool last;

	imap_parser_literal_chunk(s->parser, &data, &size, &last);
	if (s->append_streaming && !s->append_too_big &&
	    buf_append(&s->append_data, data, size) < 0)
		s->append_too_big = true;
}

static void on_line(struct imap_session *s)
{
	size_t len;
	const char *line = imap_parser_line(s->parser, &len);
	enum imap_line_mode mode = s->line_mode;

	s->line_mode = IMAP_LINE_NONE;
	if (mode == IMAP_LINE_AUTH)
		imap_auth_response(s, line, len);
	else if (mode == IMAP_LINE_IDLE)
		imap_idle_line(s, line);
}

static void on_error(struct imap_session *s)
{
	enum imap_parse_error code;
	bool fatal;
	const char *error = imap_parser_error(s->parser, &code, &fatal);
	const char *tag = imap_parser_tag(s->parser);

	if (s->line_mode != IMAP_LINE_NONE) {
		/* an overlong AUTHENTICATE response or line while idling */
		bool idling = s->line_mode == IMAP_LINE_IDLE;
		tag = s->line_tag;
		s->line_mode = IMAP_LINE_NONE;
		if (idling && !fatal) {
			imap_idle_end(s, false, error);
			append_reset(s);
			return;
		}
	}
	if (fatal) {
		imap_printf(s, "* BYE %s\r\n", error);
		conn_close(s->conn, error);
		return;
	}
	imap_bad(s, tag, "%s", error);
	append_reset(s);
}

static void start_tls(struct imap_session *s)
{
	struct buf *in = conn_input(s->conn);

	s->starttls_pending = false;
	buf_consume(in, in->len);
	imap_parser_reset(s->parser);
	if (conn_starttls(s->conn) < 0)
		conn_close(s->conn, "STARTTLS failed");
}

static void handle(struct imap_session *s, enum imap_parse_result r)
{
	switch (r) {
	case IMAP_PARSE_NEED_MORE:
		break;
	case IMAP_PARSE_COMMAND:
		on_command(s);
		break;
	case IMAP_PARSE_CONTINUATION:
		imap_write(s, "+ OK\r\n", 6);
		break;
	case IMAP_PARSE_LITERAL:
		on_literal(s);
		break;
	case IMAP_PARSE_LITERAL_DATA:
		on_literal_data(s);
		break;
	case IMAP_PARSE_LINE:
		on_line(s);
		break;
	case IMAP_PARSE_ERROR:
		on_error(s);
		break;
	}
}

void imap_process_input(struct imap_session *s)
{
	struct buf *in = conn_input(s->conn);

	if (s->dispatching)
		return;
	s->dispatching = true;
	while (s->job == NULL && !conn_is_closing(s->conn) && in->len > 0 &&
	       s->state != IMAP_STATE_LOGOUT) {
		size_t used = 0;
		enum imap_parse_result r = imap_parser_parse(s->parser, in->data, in->len, &used);
		handle(s, r);
		if (s->job == NULL)
			imap_notify_end(s);
		buf_consume(in, used);
		if (s->starttls_pending) {
			start_tls(s);
			break;
		}
		if (s->compress_pending) {
			/* the frontend hands the rest back inflated */
			s->compress_pending = false;
			break;
		}
		if (r == IMAP_PARSE_NEED_MORE)
			break;
	}
	s->dispatching = false;
}

/* ---- the handler the frontend calls ---- */

static void *imap_session_new(struct conn *conn)
{
	struct imap_session *s = mf_calloc(1, sizeof(*s));
	struct imap_parser_limits pl = { 0 };
	struct buf caps;

	s->conn = conn;
	s->ctx = conn_context(conn);
	s->limits = &s->ctx->config->limits;
	pl.line_max = MF_MAX(s->limits->line_max, 1024);
	/* literals count toward line_max when kept in memory: larger ones are
	 * offered to on_literal(), which streams APPEND's message */
	pl.stream_min = 1024;
	s->parser = imap_parser_create(&pl);
	buf_init(&caps, 0);
	imap_capabilities(s, &caps);
	imap_printf(s, "* OK [CAPABILITY %.*s] mailfleet IMAP ready\r\n", (int)caps.len, caps.data);
	buf_free(&caps);
	return s;
}

static void imap_session_input(void *session, struct conn *conn)
{
	imap_process_input(session);
}

static void imap_session_free(void *session)
{
	struct imap_session *s = session;

	if (s == NULL)
		return;
	mailbox_watch_remove(&s->idle_watcher);
	imap_searchres_reset(s);
	mf_free(&s->notify_path);
	mf_free(&s->notify_name);
	job_free(&s->job);
	append_reset(s);
	mailbox_free(&s->box);
	imap_idle_view_free(&s->idle_view);
	imap_parser_destroy(&s->parser);
	mf_free(&s);
}

static void imap_session_tick(void *session, struct conn *conn)
{
	struct imap_session *s = session;

	if (s->job == NULL && s->line_mode == IMAP_LINE_IDLE)
		imap_idle_tick(s);
}

static void imap_session_wake(void *session, struct conn *conn)
{
	imap_idle_wake(session);
}

static void imap_session_drained(void *session, struct conn *conn)
{
	struct imap_session *s = session;

	if (s->job != NULL && !s->job_running)
		output_pump(s);
}

const struct proto_handler imap_handler = {
	.name = "imap",
	.session_new = imap_session_new,
	.session_input = imap_session_input,
	.session_free = imap_session_free,
	.session_tick = imap_session_tick,
	.session_output_drained = imap_session_drained,
	.session_wake = imap_session_wake,
};
