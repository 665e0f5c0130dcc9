/* imap-idle.c: the IDLE command (RFC 2177) and the in-process change
 * notification that makes it fast.
 *
 * An idling session registers a watcher for its mailbox with the process's
 * registry (store/mailbox-watch.h). The registry polls each watched
 * mailbox once a second however many sessions idle on it, and passes on
 * the notifications this node's own changes make; either wakes the
 * session through conn_wake(), which then syncs its view in a job and
 * sends EXPUNGE / EXISTS / FETCH. Nothing runs per idling connection
 * except the "* OK Still here" keepalive, so idlers cost only memory.
 *
 * The commands that change mailboxes (APPEND, COPY, MOVE, STORE, EXPUNGE,
 * CLOSE) notify the registry when their job is done: imap-session.c calls
 * imap_notify_begin() when the command is parsed and imap_notify_end()
 * once no job runs for it any more. */
#include "imapd/imap-private.h"
#include "store/mailbox-watch.h"
#include "lib/log.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- waking and syncing ---- */

/* Registry thread, under its lock: only hand the wake to our loop. */
static void idle_watch_wake(void *context)
{
	struct imap_session *s = context;

	conn_wake(s->conn);
}

/* Gives the memory freed by idle drops back to the system: glibc keeps it
 * in the worker threads' arenas otherwise (measured: 10x the live heap
 * with 100 idlers on 5,000 messages). At most once a second. */
static void idle_trim(struct imap_session *s)
{
	uint64_t now = mf_now_ms(), last = __atomic_load_n(&s->ctx->idle_trim_ms, __ATOMIC_RELAXED);

	__atomic_store_n(&s->ctx->idle_trim_pending, true, __ATOMIC_RELAXED);
	if (now - last < 1000 ||
	    !__atomic_compare_exchange_n(&s->ctx->idle_trim_ms, &last, now, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;   /* an idler's tick does it within the second */
	__atomic_store_n(&s->ctx->idle_trim_pending, false, __ATOMIC_RELAXED);
	malloc_trim(0);
}

/* Worker thread, still idling: the mailbox's messages are let go (the
 * view keeps 16 bytes a message), so 10,000 idlers on real mailboxes fit
 * in little memory; the next sync brings them back. */
static void idle_drop(struct imap_session *s)
{
	if (s->line_mode != IMAP_LINE_IDLE || s->box == NULL || s->idle_view != NULL)
		return;
	s->idle_view = imap_idle_view_save(s);
	mailbox_drop_msgs(s->box);
	idle_trim(s);
}

static void idle_sync_work(struct imap_job *job)
{
	const char *error;

	if (imap_sync_box(job->s, &job->out, &error) < 0)
		log_warn("imap: IDLE sync of %s failed: %s", job->s->box->path, error);
	idle_drop(job->s);
}

/* At IDLE start, and without a registry (not in mailfleetd) once a second:
 * sync only when new/ or cur/ moved since the session's last sync. */
static void idle_poll_work(struct imap_job *job)
{
	if (mailbox_changed(job->s->box) != 0)
		idle_sync_work(job);
	else
		idle_drop(job->s);
}

static void idle_sync_start(struct imap_session *s, imap_work_fn *work)
{
	s->idle_poll_due = false;
	s->idle_last_poll_ms = mf_now_ms();
	imap_job_start(imap_job_new(s, "*", work));
}

void imap_idle_wake(struct imap_session *s)
{
	if (s->line_mode != IMAP_LINE_IDLE || s->box == NULL) {
		/* left IDLE without DONE (an overlong line): stop watching */
		mailbox_watch_remove(&s->idle_watcher);
		return;
	}
	if (s->job != NULL)
		s->idle_poll_due = true;   /* after this job: the next tick */
	else
		idle_sync_start(s, idle_sync_work);
}

/* ---- the command ---- */

void imap_cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->arg_count != 0) {
		imap_bad(s, cmd->tag, "IDLE takes no arguments");
		return;
	}
	snprintf(s->line_tag, sizeof(s->line_tag), "%s", cmd->tag);
	s->line_mode = IMAP_LINE_IDLE;
	s->idle_keepalive_ms = mf_now_ms();
	imap_parser_read_line(s->parser);
	conn_set_timeout(s->conn, IMAP_IDLE_TIMEOUT_SECS);
	imap_write(s, "+ idling\r\n", 10);
	mailbox_watch_remove(&s->idle_watcher);
	if (s->box == NULL)
		return;
	if (s->ctx->watch != NULL)
		s->idle_watcher = mailbox_watch_add(s->ctx->watch, s->box->path, idle_watch_wake, s);
	/* what changed between the last sync and the registration (two stats:
	 * a full sync per IDLE would cost each idler the mailbox lock) */
	idle_sync_start(s, idle_poll_work);
}

void imap_idle_tick(struct imap_session *s)
{
	uint64_t now = mf_now_ms();

	if (__atomic_load_n(&s->ctx->idle_trim_pending, __ATOMIC_RELAXED))
		idle_trim(s);
	if (now - s->idle_keepalive_ms >= s->ctx->config->imap_idle_keepalive_secs * 1000ULL) {
		s->idle_keepalive_ms = now;
		imap_printf(s, "* OK Still here\r\n");
	}
	if (s->box == NULL)
		return;
	if (s->idle_poll_due)
		idle_sync_start(s, idle_sync_work);
	else if (s->idle_watcher == NULL &&
		 now - s->idle_last_poll_ms >= IMAP_IDLE_POLL_SECS * 1000 - 100)
		idle_sync_start(s, idle_poll_work);
}

struct idle_end {
	bool ok;
	char text[128];
	bool failed;
};

/* Brings the dropped messages back before the tagged reply, so the next
 * command sees the mailbox (and the client its changes). */
static void idle_end_work(struct imap_job *job)
{
	struct idle_end *e = job->data;
	const char *error;

	if (imap_sync_box(job->s, &job->out, &error) < 0) {
		log_warn("imap: sync of %s after IDLE failed: %s", job->s->box->path, error);
		buf_printf(&job->out, "* BYE Cannot read the mailbox: %s\r\n", error);
		e->failed = true;
		return;
	}
	buf_printf(&job->out, "%s %s %s\r\n", job->tag, e->ok ? "OK" : "BAD", e->text);
}

static void idle_end_finish(struct imap_job *job)
{
	struct idle_end *e = job->data;

	if (e->failed)
		conn_close(job->s->conn, "mailbox unreadable after IDLE");
}

void imap_idle_end(struct imap_session *s, bool ok, const char *text)
{
	mailbox_watch_remove(&s->idle_watcher);
	s->idle_poll_due = false;
	conn_set_timeout(s->conn, imap_auth_timeout(s));
	if (s->idle_view == NULL) {
		if (ok)
			imap_tagged(s, s->line_tag, "OK %s", text);
		else
			imap_bad(s, s->line_tag, "%s", text);
		return;
	}
	struct idle_end *e = mf_calloc(1, sizeof(*e));
	e->ok = ok;
	snprintf(e->text, sizeof(e->text), "%s", text);
	struct imap_job *job = imap_job_new(s, s->line_tag, idle_end_work);
	job->data = e;
	job->data_free = free;
	job->finish = idle_end_finish;
	imap_job_start(job);
}

void imap_idle_line(struct imap_session *s, const char *line)
{
	if (strcasecmp(line, "DONE") == 0)
		imap_idle_end(s, true, "Idle completed");
	else
		imap_idle_end(s, false, "Expected DONE");
}

/* ---- notifying other sessions of this session's changes ---- */

static bool name_in(const char *name, const char *const *list)
{
	for (; *list != NULL; list++) {
		if (strcmp(name, *list) == 0)
			return true;
	}
	return false;
}

void imap_notify_begin(struct imap_session *s, const struct imap_command *cmd)
{
	static const char *const on_selected[] = {
		"STORE", "UID STORE", "EXPUNGE", "UID EXPUNGE", "CLOSE", "MOVE", "UID MOVE", NULL
	};
	static const char *const to_target[] = { "COPY", "UID COPY", "MOVE", "UID MOVE", NULL };
	char name[MAILBOX_NAME_BUF];

	imap_notify_end(s);
	if (s->ctx->watch == NULL || s->state == IMAP_STATE_NOAUTH)
		return;
	if (s->box != NULL && name_in(cmd->name, on_selected))
		s->notify_path = mf_strdup(s->box->path);
	if (name_in(cmd->name, to_target) && cmd->arg_count == 2 &&
	    imap_client_mailbox_name(s, &cmd->args[1], name, sizeof(name)))
		s->notify_name = mf_strdup(name);
	else if (strcmp(cmd->name, "APPEND") == 0 && cmd->arg_count >= 1 &&
		 imap_client_mailbox_name(s, &cmd->args[0], name, sizeof(name)))
		s->notify_name = mf_strdup(name);
}

void imap_notify_end(struct imap_session *s)
{
	if (s->notify_path != NULL)
		mailbox_watch_notify(s->ctx->watch, s->notify_path);
	if (s->notify_name != NULL)
		mailbox_watch_notify_mailbox(s->ctx->watch, s->user.domain, s->user.localpart,
					     s->notify_name);
	mf_free(&s->notify_path);
	mf_free(&s->notify_name);
}
