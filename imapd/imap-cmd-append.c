/* imap-cmd-append.c: APPEND (RFC 3501 6.3.11) with flags, internal date,
 * UIDPLUS APPENDUID and APPENDLIMIT; the message as a literal, a literal8
 * (BINARY, RFC 3516) or, after ENABLE UTF8=ACCEPT, "UTF8 (" literal8 ")"
 * (RFC 6855 4). A large message literal arrives streamed (imap-session.c
 * collects it, bounded by the limit); small ones come in the parsed
 * command. */
#include "imapd/imap-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct append_data {
	char name[MAILBOX_NAME_BUF];
	uint32_t flags;
	char *kw[MAILBOX_KEYWORDS_MAX];
	unsigned kw_count;
	int64_t date;
	unsigned char *msg;
	size_t len;
};

static void append_data_free(void *data)
{
	struct append_data *d = data;

	for (unsigned i = 0; i < d->kw_count; i++)
		free(d->kw[i]);
	free(d->msg);
	free(d);
}

/* date-time: "dd-Mon-yyyy hh:mm:ss +hhmm" (day may be space-padded). */
static bool parse_date_time(const char *str, int64_t *time_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4], sign;
	int day, year, hh, mm, ss, zone, used = 0;
	struct tm tm = { 0 };

	if (sscanf(str, "%2d-%3c-%4d %2d:%2d:%2d %c%4d%n", &day, mon, &year, &hh, &mm, &ss,
		   &sign, &zone, &used) != 8 || str[used] != '\0' || (sign != '+' && sign != '-'))
		return false;
	mon[3] = '\0';
	const char *m = strstr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || day < 1 || day > 31 || hh > 23 || mm > 59 ||
	    ss > 60 || zone % 100 > 59 || year < 1900)
		return false;
	tm.tm_mday = day;
	tm.tm_mon = (int)((m - months) / 3);
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	int64_t offset = (zone / 100) * 3600 + (zone % 100) * 60;
	*time_r = (int64_t)timegm(&tm) - (sign == '+' ? offset : -offset);
	return true;
}

/* The user's and the domain's quota (usage as the store counts it). */
static bool over_quota(struct imap_session *s, size_t len)
{
	uint64_t bytes, msgs;
	const struct dir_user_info *u = &s->user;

	if (u->quota_bytes != 0 &&
	    store_user_usage(s->ctx->store, u->domain, u->localpart, &bytes, &msgs) == 0 &&
	    bytes + len > u->quota_bytes)
		return true;
	return u->domain_quota_bytes != 0 &&
		store_domain_usage(s->ctx->store, u->domain, &bytes) == 0 &&
		bytes + len > u->domain_quota_bytes;
}

static void append_failed(struct imap_job *job, const char *error)
{
	buf_printf(&job->out, "%s NO %s%s\r\n", job->tag,
		   errno == ENOENT ? "[TRYCREATE] " : errno == ENOSPC || errno == EDQUOT ?
		   "[OVERQUOTA] " : "[SERVERBUG] ", error);
}

/* Into the selected mailbox: the sync that reports the new message to the
 * session also gives its UID (one rescan instead of two). */
static void append_selected(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct append_data *d = job->data;
	char *base;
	const char *error;
	uint32_t uid = 0;

	if (mailbox_append_unsynced(s->ctx->store, s->user.domain, s->user.localpart, d->name, d->msg,
				    d->len, d->flags, (const char *const *)d->kw, d->kw_count, d->date,
				    &base, &error) < 0) {
		append_failed(job, error);
		return;
	}
	if (imap_sync_box(s, &job->out, &error) < 0)
		buf_printf(&job->out, "* OK Mailbox sync failed: %s\r\n", error);
	else
		uid = mailbox_uid_of_base(s->box, base);
	free(base);
	if (uid != 0)
		buf_printf(&job->out, "%s OK [APPENDUID %u %u] Append completed\r\n", job->tag,
			   s->box->uid_validity, uid);
	else   /* expunged by another session already, or not synced */
		buf_printf(&job->out, "%s OK Append completed\r\n", job->tag);
}

static void append_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct append_data *d = job->data;
	uint32_t validity, uid;
	const char *error;

	if (over_quota(s, d->len)) {
		buf_printf(&job->out, "%s NO [OVERQUOTA] Quota exceeded\r\n", job->tag);
		return;
	}
	if (s->box != NULL && strcmp(s->box->name, d->name) == 0) {
		append_selected(job);
		return;
	}
	if (mailbox_append(s->ctx->store, s->user.domain, s->user.localpart, d->name, d->msg, d->len,
			   d->flags, (const char *const *)d->kw, d->kw_count, d->date, &validity, &uid,
			   &error) < 0) {
		append_failed(job, error);
		return;
	}
	if (uid != 0)
		buf_printf(&job->out, "%s OK [APPENDUID %u %u] Append completed\r\n", job->tag,
			   validity, uid);
	else
		buf_printf(&job->out, "%s OK Append completed\r\n", job->tag);
}

/* Where the message is: the last argument, or "UTF8" and a list holding
 * only the literal as the last two. *first_r: the index where the message
 * part starts (flags and date come before it). */
static bool append_find_msg(const struct imap_command *cmd, size_t *first_r, bool *utf8_r,
			    const struct imap_arg **msg_r)
{
	size_t n = cmd->arg_count, count;
	const struct imap_arg *last = n > 0 ? &cmd->args[n - 1] : NULL, *list;

	if (last == NULL)
		return false;
	*utf8_r = n >= 2 && imap_arg_atom_equals(&cmd->args[n - 2], "UTF8");
	if (*utf8_r) {
		/* a plain {n} inside is taken too: some clients send one */
		if (!imap_arg_get_list(last, &list, &count) || count != 1 ||
		    (list[0].type != IMAP_ARG_LITERAL && list[0].type != IMAP_ARG_LITERAL_STREAMED))
			return false;
		*first_r = n - 2;
		*msg_r = &list[0];
		return true;
	}
	if (last->type != IMAP_ARG_LITERAL && last->type != IMAP_ARG_LITERAL_STREAMED &&
	    last->type != IMAP_ARG_STRING)
		return false;
	*first_r = n - 1;
	*msg_r = last;
	return true;
}

bool imap_append_literal_is_message(const struct imap_command *cmd, unsigned depth)
{
	size_t n;

	if (cmd == NULL || strcmp(cmd->name, "APPEND") != 0)
		return false;
	if (depth == 0)
		return true;
	n = cmd->arg_count;
	return depth == 1 && n >= 2 && cmd->args[n - 1].type == IMAP_ARG_LIST &&
		cmd->args[n - 1].len == 0 && imap_arg_atom_equals(&cmd->args[n - 2], "UTF8");
}

/* True when the header section (up to the first empty line) has a byte
 * over 127. */
static bool header_has_8bit(const unsigned char *data, size_t len)
{
	bool line_start = true;

	for (size_t i = 0; i < len; i++) {
		if (data[i] >= 0x80)
			return true;
		if (data[i] == '\n') {
			if (line_start)
				return false;
			line_start = true;
		} else if (data[i] != '\r') {
			line_start = false;
		}
	}
	return false;
}

/* Mailbox, flags and date: the arguments before the message (index end). */
static bool append_parse(const struct imap_session *s, const struct imap_command *cmd,
			 size_t end, struct append_data *d)
{
	const struct imap_arg *list;
	size_t count, i = 1;
	const char *kw[MAILBOX_KEYWORDS_MAX], *date;

	if (end < 1 || end > 3 ||
	    !imap_client_mailbox_name(s, &cmd->args[0], d->name, sizeof(d->name)))
		return false;
	if (i < end && imap_arg_get_list(&cmd->args[i], &list, &count)) {
		if (!imap_parse_flags(list, count, &d->flags, kw, &d->kw_count))
			return false;
		for (unsigned k = 0; k < d->kw_count; k++)
			d->kw[k] = mf_strdup(kw[k]);
		i++;
	}
	if (i < end) {
		if (!imap_arg_get_string(&cmd->args[i], &date) || !parse_date_time(date, &d->date))
			return false;
		i++;
	}
	return i == end;
}

/* The checks before the store is asked; false when a response was sent. */
static bool append_check(struct imap_session *s, const struct imap_command *cmd,
			 const unsigned char *data, size_t len, struct append_data *d)
{
	const struct imap_arg *msg;
	size_t first;
	bool utf8;

	if (!append_find_msg(cmd, &first, &utf8, &msg) || !append_parse(s, cmd, first, d)) {
		imap_bad(s, cmd->tag, "Invalid APPEND arguments");
		return false;
	}
	if (utf8 && !s->utf8_accept) {
		imap_bad(s, cmd->tag, "APPEND UTF8 needs ENABLE UTF8=ACCEPT");
		return false;
	}
	if (len > s->limits->message_size_max) {
		imap_tagged(s, cmd->tag, "NO [TOOBIG] Message larger than APPENDLIMIT");
		return false;
	}
	/* RFC 6855 4, for a server offering UTF8=ACCEPT; an IMAP4rev2 client
	 * takes UTF-8 headers (RFC 9051). Without the offer, 8-bit header
	 * fields are stored as they came (old mail being migrated). */
	if (s->ctx->config->imap_utf8_accept && !s->utf8_accept && !s->imap4rev2 &&
	    header_has_8bit(data, len)) {
		imap_tagged(s, cmd->tag, "NO 8-bit header fields need ENABLE UTF8=ACCEPT");
		return false;
	}
	return true;
}

void imap_append_run(struct imap_session *s, const struct imap_command *cmd,
		     const unsigned char *data, size_t len)
{
	struct append_data *d = mf_calloc(1, sizeof(*d));
	struct imap_job *job;

	if (!append_check(s, cmd, data, len, d)) {
		append_data_free(d);
		return;
	}
	d->msg = mf_malloc(len + 1);
	if (len > 0)
		memcpy(d->msg, data, len);
	d->len = len;
	job = imap_job_new(s, cmd->tag, append_work);
	job->data = d;
	job->data_free = append_data_free;
	imap_job_start(job);
}

void imap_cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_arg *msg;
	size_t first;
	bool utf8;

	if (!append_find_msg(cmd, &first, &utf8, &msg) || msg->type == IMAP_ARG_LITERAL_STREAMED) {
		imap_bad(s, cmd->tag, "APPEND needs a message literal");
		return;
	}
	imap_append_run(s, cmd, (const unsigned char *)msg->str, msg->len);
}
