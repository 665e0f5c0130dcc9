/* pop3-commands.c: the POP3 TRANSACTION state (RFC 1939 5 and 7: STAT,
 * LIST, UIDL, RETR, TOP, DELE, RSET, NOOP) and QUIT with the UPDATE state.
 * Message numbers are 1-based positions in the list fixed at login; a
 * message marked deleted is invisible until RSET. Nothing is removed from
 * the store before QUIT. Listings (LIST, UIDL) and messages are produced
 * in bounded pieces by pop3.c's output pump. */
#include "pop3d/pop3-private.h"
#include "store/mailbox-watch.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The message numbered by arg, or NULL after an error reply. */
static struct pop3_message *arg_message(struct pop3_session *s, const struct pop3_arg *arg)
{
	uint32_t n;

	if (!pop3_parse_number(arg, &n)) {
		pop3_err(s, "Invalid message number");
		return NULL;
	}
	if (n == 0 || n > s->mbox->count || s->mbox->msgs[n - 1].deleted) {
		pop3_err(s, "No such message");
		return NULL;
	}
	return &s->mbox->msgs[n - 1];
}

static unsigned msg_number(const struct pop3_session *s, const struct pop3_message *msg)
{
	return (unsigned)(msg - s->mbox->msgs) + 1;
}

void pop3_cmd_stat(struct pop3_session *s, const struct pop3_event *ev)
{
	unsigned count = 0;
	uint64_t size = 0;

	for (unsigned i = 0; i < s->mbox->count; i++) {
		if (!s->mbox->msgs[i].deleted) {
			count++;
			size += s->mbox->msgs[i].size;
		}
	}
	pop3_ok(s, "%u %llu", count, (unsigned long long)size);
}

void pop3_cmd_list(struct pop3_session *s, const struct pop3_event *ev)
{
	if (ev->argc == 1) {
		struct pop3_message *msg = arg_message(s, &ev->args[0]);
		if (msg != NULL)
			pop3_ok(s, "%u %llu", msg_number(s, msg), (unsigned long long)msg->size);
		return;
	}
	pop3_ok(s, "Scan listing follows");
	pop3_send_listing(s, POP3_OUT_LIST);
}

void pop3_cmd_uidl(struct pop3_session *s, const struct pop3_event *ev)
{
	if (ev->argc == 1) {
		struct pop3_message *msg = arg_message(s, &ev->args[0]);
		if (msg != NULL)
			pop3_ok(s, "%u %s", msg_number(s, msg), msg->uidl);
		return;
	}
	pop3_ok(s, "Unique-ID listing follows");
	pop3_send_listing(s, POP3_OUT_UIDL);
}

/* "<n> <size or uidl>\r\n" into line; returns its length. */
static size_t listing_line(const struct pop3_session *s, unsigned idx, char *line)
{
	const struct pop3_message *msg = &s->mbox->msgs[idx];
	char digits[24];
	size_t len = 0, n = 0;
	uint64_t v = idx + 1;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	while (n > 0)
		line[len++] = digits[--n];
	line[len++] = ' ';
	if (s->output == POP3_OUT_LIST) {
		v = msg->size;
		do {
			digits[n++] = (char)('0' + v % 10);
			v /= 10;
		} while (v > 0);
		while (n > 0)
			line[len++] = digits[--n];
	} else {
		size_t ulen = strlen(msg->uidl);
		memcpy(line + len, msg->uidl, ulen);
		len += ulen;
	}
	line[len++] = '\r';
	line[len++] = '\n';
	return len;
}

bool pop3_listing_fill(struct pop3_session *s, unsigned char *out, size_t max, size_t *written_r)
{
	size_t w = 0;
	char line[48 + POP3_UIDL_MAX];

	for (; s->list_next < s->mbox->count; s->list_next++) {
		if (s->mbox->msgs[s->list_next].deleted)
			continue;
		size_t n = listing_line(s, s->list_next, line);
		if (w + n > max) {
			*written_r = w;
			return false;
		}
		memcpy(out + w, line, n);
		w += n;
	}
	if (w + 3 > max) {
		*written_r = w;
		return false;
	}
	memcpy(out + w, ".\r\n", 3);
	*written_r = w + 3;
	return true;
}

struct read_job {
	struct pop3_mailbox *mbox;
	unsigned idx;
	size_t max_size;
	bool top;
	uint32_t top_lines;
	bool read_ahead;
	unsigned char *data;
	size_t len;
	int ret, err;
	struct pop3_prefetched extra[POP3_PREFETCH_MAX];
	unsigned extra_count;
};

void pop3_prefetch_clear(struct pop3_session *s)
{
	for (unsigned i = 0; i < s->prefetch_count; i++)
		free(s->prefetch[i].data);
	s->prefetch_count = 0;
}

/* Input waits while the job runs, so the deleted marks cannot change. */
static void read_ahead(struct read_job *job)
{
	size_t bytes = 0;

	for (unsigned i = job->idx + 1; i < job->mbox->count && job->extra_count < POP3_PREFETCH_MAX &&
	     bytes < POP3_PREFETCH_BYTES; i++) {
		struct pop3_prefetched *p = &job->extra[job->extra_count];
		if (job->mbox->msgs[i].deleted)
			continue;
		if (pop3_mailbox_read(job->mbox, i, job->max_size, &p->data, &p->len) < 0)
			break;
		p->idx = i;
		bytes += p->len;
		job->extra_count++;
	}
}

static void read_work(void *arg)
{
	struct read_job *job = arg;

	job->ret = pop3_mailbox_read(job->mbox, job->idx, job->max_size, &job->data, &job->len);
	job->err = errno;
	if (job->ret == 0 && job->read_ahead)
		read_ahead(job);
}

static void send_read(struct pop3_session *s, unsigned idx, unsigned char *data, size_t len,
		      bool top, uint32_t lines)
{
	s->next_sequential = idx + 1;
	if (top) {
		pop3_ok(s, "Top of message follows");
		pop3_send_message(s, data, pop3_top_length(data, len, lines));
	} else {
		pop3_ok(s, "%llu octets", (unsigned long long)s->mbox->msgs[idx].size);
		pop3_send_message(s, data, len);
	}
}

static void read_done(struct pop3_session *s, void *arg)
{
	struct read_job *job = arg;

	if (conn_is_closing(s->conn)) {
		free(job->data);
	} else if (job->ret < 0 && job->err == ENOENT) {
		pop3_err_nocount(s, "Message %u was removed by another session", job->idx + 1);
	} else if (job->ret < 0 && job->err == EFBIG) {
		pop3_err_nocount(s, "[SYS/PERM] Message %u is too large to retrieve", job->idx + 1);
	} else if (job->ret < 0) {
		log_error("pop3: <%s>: reading message %u: %s", s->info.address, job->idx + 1,
			  strerror(job->err));
		pop3_err_nocount(s, "[SYS/TEMP] Cannot read the message, try again later");
	} else {
		pop3_prefetch_clear(s);
		memcpy(s->prefetch, job->extra, job->extra_count * sizeof(job->extra[0]));
		s->prefetch_count = job->extra_count;
		job->extra_count = 0;
		send_read(s, job->idx, job->data, job->len, job->top, job->top_lines);
	}
	for (unsigned i = 0; i < job->extra_count; i++)
		free(job->extra[i].data);
	free(job);
}

/* Serves idx from the read-ahead when it is there (dropping what is older). */
static bool send_prefetched(struct pop3_session *s, unsigned idx, bool top, uint32_t lines)
{
	unsigned i = 0;

	while (i < s->prefetch_count && s->prefetch[i].idx < idx)
		free(s->prefetch[i++].data);
	memmove(s->prefetch, s->prefetch + i, (s->prefetch_count - i) * sizeof(s->prefetch[0]));
	s->prefetch_count -= i;
	if (s->prefetch_count == 0 || s->prefetch[0].idx != idx)
		return false;
	struct pop3_prefetched p = s->prefetch[0];
	s->prefetch_count--;
	memmove(s->prefetch, s->prefetch + 1, s->prefetch_count * sizeof(s->prefetch[0]));
	send_read(s, idx, p.data, p.len, top, lines);
	return true;
}

static void read_begin(struct pop3_session *s, struct pop3_message *msg, bool top, uint32_t lines)
{
	unsigned idx = msg_number(s, msg) - 1;

	if (send_prefetched(s, idx, top, lines))
		return;
	struct read_job *job = mf_calloc(1, sizeof(*job));
	job->mbox = s->mbox;
	job->idx = idx;
	job->max_size = MF_MAX(s->limits->message_size_max, (size_t)64 * 1024 * 1024);
	job->top = top;
	job->top_lines = lines;
	/* read ahead only for a client that reads whole messages in order */
	job->read_ahead = !top && idx > 0 && idx == s->next_sequential;
	pop3_run_job(s, read_work, read_done, job);
}

void pop3_cmd_retr(struct pop3_session *s, const struct pop3_event *ev)
{
	struct pop3_message *msg = arg_message(s, &ev->args[0]);

	if (msg != NULL)
		read_begin(s, msg, false, 0);
}

void pop3_cmd_top(struct pop3_session *s, const struct pop3_event *ev)
{
	struct pop3_message *msg = arg_message(s, &ev->args[0]);
	uint32_t lines;

	if (msg == NULL)
		return;
	if (!pop3_parse_number(&ev->args[1], &lines)) {
		pop3_err(s, "Invalid number of lines");
		return;
	}
	read_begin(s, msg, true, lines);
}

void pop3_cmd_dele(struct pop3_session *s, const struct pop3_event *ev)
{
	struct pop3_message *msg = arg_message(s, &ev->args[0]);

	if (msg == NULL)
		return;
	msg->deleted = true;
	pop3_ok(s, "Message %u marked to be deleted", msg_number(s, msg));
}

void pop3_cmd_rset(struct pop3_session *s, const struct pop3_event *ev)
{
	uint64_t size = 0;

	for (unsigned i = 0; i < s->mbox->count; i++) {
		s->mbox->msgs[i].deleted = false;
		size += s->mbox->msgs[i].size;
	}
	pop3_ok(s, "Maildrop has %u messages (%llu octets)", s->mbox->count, (unsigned long long)size);
}

void pop3_cmd_noop(struct pop3_session *s, const struct pop3_event *ev)
{
	pop3_ok(s, "Nothing happens");
}

struct update_job {
	struct pop3_mailbox *mbox;
	unsigned marked, removed;
	int ret;
	const char *error;
};

static void update_work(void *arg)
{
	struct update_job *job = arg;

	job->ret = pop3_mailbox_commit(job->mbox, &job->removed, &job->error);
	pop3_mailbox_close(&job->mbox);
}

static void update_done(struct pop3_session *s, void *arg)
{
	struct update_job *job = arg;

	if (job->removed > 0)   /* wake this node's idlers now */
		mailbox_watch_notify_mailbox(s->ctx->watch, s->info.domain, s->info.localpart, NULL);
	if (job->ret == 0) {
		log_info("pop3(%s): <%s> logged out: %u messages deleted", conn_peer_addr(s->conn),
			 s->info.address, job->removed);
		pop3_ok(s, "mailfleet POP3 signing off (%u messages deleted)", job->removed);
	} else {
		log_warn("pop3(%s): <%s> UPDATE: %s (%u of %u removed)", conn_peer_addr(s->conn),
			 s->info.address, job->error, job->removed, job->marked);
		pop3_err_nocount(s, "[SYS/TEMP] %s", job->error);
	}
	conn_close(s->conn, "QUIT");
	free(job);
}

void pop3_cmd_quit(struct pop3_session *s, const struct pop3_event *ev)
{
	s->state = s->state == POP3_STATE_TRANSACTION ? POP3_STATE_UPDATE : POP3_STATE_LOGOUT;
	if (s->mbox == NULL) {
		pop3_ok(s, "mailfleet POP3 signing off");
		conn_close(s->conn, "QUIT");
		return;
	}
	struct update_job *job = mf_calloc(1, sizeof(*job));
	job->mbox = s->mbox;
	s->mbox = NULL;
	for (unsigned i = 0; i < job->mbox->count; i++)
		job->marked += job->mbox->msgs[i].deleted ? 1 : 0;
	pop3_run_job(s, update_work, update_done, job);
}
