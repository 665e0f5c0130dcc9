/* imap-cmd-append.c: APPEND (RFC 3501 6.3.11) with flags, internal date,
 * UIDPLUS APPENDUID and APPENDLIMIT. A large message literal arrives
 * streamed (imap-session.c collects it, bounded by the limit); small ones
 * come in the parsed command. */
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
	if (mailbox_append(s->ctx->store, s->user.domain, s->user.localpart, d->name, d->msg, d->len,
			   d->flags, (const char *const *)d->kw, d->kw_count, d->date, &validity, &uid,
			   &error) < 0) {
		buf_printf(&job->out, "%s NO %s%s\r\n", job->tag,
			   errno == ENOENT ? "[TRYCREATE] " : errno == ENOSPC || errno == EDQUOT ?
			   "[OVERQUOTA] " : "[SERVERBUG] ", error);
		return;
	}
	if (s->box != NULL && strcmp(s->box->name, d->name) == 0 && imap_sync_box(s, &job->out, &error) < 0)
		buf_printf(&job->out, "* OK Mailbox sync failed: %s\r\n", error);
	buf_printf(&job->out, "%s OK [APPENDUID %u %u] Append completed\r\n", job->tag, validity, uid);
}

static bool append_parse(const struct imap_session *s, const struct imap_command *cmd,
			 struct append_data *d)
{
	const struct imap_arg *list;
	size_t count, i = 1;
	const char *kw[MAILBOX_KEYWORDS_MAX], *date;

	if (cmd->arg_count < 2 || cmd->arg_count > 4 ||
	    !imap_client_mailbox_name(s, &cmd->args[0], d->name, sizeof(d->name)))
		return false;
	if (imap_arg_get_list(&cmd->args[i], &list, &count)) {
		if (!imap_parse_flags(list, count, &d->flags, kw, &d->kw_count))
			return false;
		for (unsigned k = 0; k < d->kw_count; k++)
			d->kw[k] = mf_strdup(kw[k]);
		i++;
	}
	if (i + 1 < cmd->arg_count) {
		if (!imap_arg_get_string(&cmd->args[i], &date) || !parse_date_time(date, &d->date))
			return false;
		i++;
	}
	return i + 1 == cmd->arg_count;
}

void imap_append_run(struct imap_session *s, const struct imap_command *cmd,
		     const unsigned char *data, size_t len)
{
	struct append_data *d = mf_calloc(1, sizeof(*d));
	struct imap_job *job;

	if (!append_parse(s, cmd, d)) {
		append_data_free(d);
		imap_bad(s, cmd->tag, "Invalid APPEND arguments");
		return;
	}
	if (len > s->limits->message_size_max) {
		append_data_free(d);
		imap_tagged(s, cmd->tag, "NO [TOOBIG] Message larger than APPENDLIMIT");
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
	const struct imap_arg *msg = cmd->arg_count > 0 ? &cmd->args[cmd->arg_count - 1] : NULL;

	if (msg == NULL || (msg->type != IMAP_ARG_LITERAL && msg->type != IMAP_ARG_STRING)) {
		imap_bad(s, cmd->tag, "APPEND needs a message literal");
		return;
	}
	imap_append_run(s, cmd, (const unsigned char *)msg->str, msg->len);
}
