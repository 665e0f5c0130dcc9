/* imap-cmd-quota.c: QUOTA (RFC 9208, which keeps the RFC 2087 syntax that
 * Thunderbird uses): GETQUOTAROOT, GETQUOTA and SETQUOTA. Every mailbox of
 * a user has the same quota roots: "User quota" when the user has a limit,
 * and "Domain quota" when the user's domain has a pooled limit. The one
 * resource is STORAGE, in KiB (usage rounded up, limit rounded down), with
 * usage as the store counts it (what APPEND and LMTP check). Limits come
 * from the directory, read again for each command; SETQUOTA is refused:
 * quotas are set by the operator. */
#include "imapd/imap-private.h"
#include "imapd/imap-quote.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUOTA_ROOT_USER "User quota"
#define QUOTA_ROOT_DOMAIN "Domain quota"

enum quota_op { QUOTA_GETROOT, QUOTA_GET };

struct quota_data {
	enum quota_op op;
	char name[MAILBOX_NAME_BUF];      /* mailbox (GETQUOTAROOT) or root (GETQUOTA) */
};

struct quota_root {
	const char *name;
	uint64_t used, limit;             /* bytes */
};

static uint64_t kib_up(uint64_t bytes)
{
	return bytes / 1024 + (bytes % 1024 != 0);
}

/* The roots with a limit now (0, 1 or 2). -1 when usage cannot be read. */
static int quota_roots(struct imap_session *s, struct quota_root roots[2], unsigned *count_r)
{
	struct dir_user_info info = s->user;
	uint64_t bytes, msgs;

	/* limits changed by mailfleetctl since the login */
	if (directory_user_get(s->ctx->directory, s->user.address, &info) != 1)
		info = s->user;
	*count_r = 0;
	if (info.quota_bytes != 0) {
		if (store_user_usage(s->ctx->store, info.domain, info.localpart, &bytes, &msgs) < 0)
			return -1;
		roots[(*count_r)++] = (struct quota_root){ QUOTA_ROOT_USER, bytes, info.quota_bytes };
	}
	if (info.domain_quota_bytes != 0) {
		if (store_domain_usage(s->ctx->store, info.domain, &bytes) < 0)
			return -1;
		roots[(*count_r)++] = (struct quota_root){ QUOTA_ROOT_DOMAIN, bytes,
							   info.domain_quota_bytes };
	}
	return 0;
}

static void write_quota(struct buf *out, const struct quota_root *r)
{
	buf_printf(out, "* QUOTA ");
	imap_append_string(out, r->name, strlen(r->name), 0);
	buf_printf(out, " (STORAGE %llu %llu)\r\n", (unsigned long long)kib_up(r->used),
		   (unsigned long long)(r->limit / 1024));
}

static void getquotaroot(struct imap_job *job, const struct quota_root *roots, unsigned count)
{
	struct imap_session *s = job->s;
	struct quota_data *d = job->data;
	struct buf *out = &job->out;

	if (strcmp(d->name, "INBOX") != 0 &&
	    store_folder_exists(s->ctx->store, s->user.domain, s->user.localpart, d->name) != 1) {
		buf_printf(out, "%s NO [NONEXISTENT] No such mailbox\r\n", job->tag);
		return;
	}
	buf_printf(out, "* QUOTAROOT ");
	imap_append_mailbox_name(s, out, d->name);
	for (unsigned i = 0; i < count; i++) {
		buf_printf(out, " ");
		imap_append_string(out, roots[i].name, strlen(roots[i].name), 0);
	}
	buf_printf(out, "\r\n");
	for (unsigned i = 0; i < count; i++)
		write_quota(out, &roots[i]);
	buf_printf(out, "%s OK Getquotaroot completed\r\n", job->tag);
}

static void quota_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct quota_data *d = job->data;
	struct quota_root roots[2];
	unsigned count;

	if (quota_roots(s, roots, &count) < 0) {
		log_error("imap: %s: cannot compute the quota usage", s->user.address);
		buf_printf(&job->out, "%s NO [UNAVAILABLE] Cannot compute the quota usage\r\n", job->tag);
		return;
	}
	if (d->op == QUOTA_GETROOT) {
		getquotaroot(job, roots, count);
		return;
	}
	for (unsigned i = 0; i < count; i++) {
		if (strcmp(roots[i].name, d->name) == 0) {
			write_quota(&job->out, &roots[i]);
			buf_printf(&job->out, "%s OK Getquota completed\r\n", job->tag);
			return;
		}
	}
	buf_printf(&job->out, "%s NO [NONEXISTENT] No such quota root\r\n", job->tag);
}

static void quota_start(struct imap_session *s, const char *tag, struct quota_data *d)
{
	struct imap_job *job = imap_job_new(s, tag, quota_work);

	job->data = d;
	job->data_free = free;
	imap_job_start(job);
}

void imap_cmd_getquotaroot(struct imap_session *s, const struct imap_command *cmd)
{
	struct quota_data *d = mf_calloc(1, sizeof(*d));

	d->op = QUOTA_GETROOT;
	if (cmd->arg_count != 1 || cmd->args[0].type == IMAP_ARG_LIST) {
		free(d);
		imap_bad(s, cmd->tag, "GETQUOTAROOT needs a mailbox name");
		return;
	}
	if (!imap_client_mailbox_name(s, &cmd->args[0], d->name, sizeof(d->name))) {
		free(d);
		imap_tagged(s, cmd->tag, "NO [NONEXISTENT] No such mailbox");
		return;
	}
	quota_start(s, cmd->tag, d);
}

void imap_cmd_getquota(struct imap_session *s, const struct imap_command *cmd)
{
	struct quota_data *d = mf_calloc(1, sizeof(*d));
	const char *root;

	d->op = QUOTA_GET;
	if (cmd->arg_count != 1 || !imap_arg_get_astring(&cmd->args[0], &root)) {
		free(d);
		imap_bad(s, cmd->tag, "GETQUOTA needs a quota root");
		return;
	}
	snprintf(d->name, sizeof(d->name), "%s", root);
	quota_start(s, cmd->tag, d);
}

/* SETQUOTA root (resource limit ...): checked for syntax, then refused. */
void imap_cmd_setquota(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_arg *list;
	size_t count;
	const char *root, *atom;

	if (cmd->arg_count != 2 || !imap_arg_get_astring(&cmd->args[0], &root) ||
	    !imap_arg_get_list(&cmd->args[1], &list, &count) || count % 2 != 0)
		goto bad;
	for (size_t i = 0; i < count; i++) {
		if (!imap_arg_get_atom(&list[i], &atom))
			goto bad;
	}
	imap_tagged(s, cmd->tag, "NO [NOPERM] Quotas are set by the operator");
	return;
bad:
	imap_bad(s, cmd->tag, "SETQUOTA needs a quota root and a resource list");
}
