/* imap-private.h: the IMAP session shared by imap-session.c (life cycle,
 * input loop, dispatcher, responses, blocking jobs and bounded output),
 * the command files imap-cmd-*.c, imap-fetch.c and imap-search.c.
 *
 * Store work runs in jobs (imap_job_start): work() runs on a worker thread
 * and writes its untagged responses and its tagged completion into job->out;
 * the session queues that text to the client in bounded pieces (each piece
 * after the previous one left the output queue), then either runs work()
 * again (job->more: FETCH in batches) or goes back to reading commands.
 * While a job or its output is pending no input is parsed. */
#ifndef MF_IMAP_PRIVATE_H
#define MF_IMAP_PRIVATE_H

#include "imapd/imap.h"
#include "imapd/imap-parser.h"
#include "cluster/directory.h"
#include "store/mailbox.h"
#include "lib/buf.h"

#define IMAP_OUT_CHUNK (128 * 1024)       /* one piece of queued output */
#define IMAP_OUT_RESERVE (16 * 1024)      /* queue room kept for short replies */
#define IMAP_BATCH_BYTES (256 * 1024)     /* FETCH output per job run */
#define IMAP_IDLE_POLL_SECS 1
#define IMAP_IDLE_TIMEOUT_SECS (30 * 60)
#define IMAP_AUTH_TIMEOUT_SECS (30 * 60)  /* RFC 3501 5.4: at least 30 minutes */
#define IMAP_TAG_MAX 64
#define MAILBOX_NAME_BUF 1024             /* longest mailbox name + 1 */

enum imap_state {
	IMAP_STATE_NOAUTH,
	IMAP_STATE_AUTH,
	IMAP_STATE_SELECTED,
	IMAP_STATE_LOGOUT,
};

enum imap_line_mode {
	IMAP_LINE_NONE,
	IMAP_LINE_AUTH,          /* waiting for the AUTHENTICATE response */
	IMAP_LINE_IDLE,          /* waiting for DONE */
};

struct imap_session;
struct imap_job;
struct mailbox_watcher;

typedef void imap_work_fn(struct imap_job *job);
typedef void imap_finish_fn(struct imap_job *job);

struct imap_job {
	struct imap_session *s;
	char tag[IMAP_TAG_MAX + 1];
	imap_work_fn *work;        /* worker thread */
	imap_finish_fn *finish;    /* loop thread, after each work() (may be NULL) */
	struct buf out;            /* responses produced by work() */
	bool more;                 /* run work() again once out is sent */
	void *data;                /* command state */
	void (*data_free)(void *data);
};

/* What an idling client knows, in little memory: its UIDs as ranges, the
 * \Recent ones, and the HIGHESTMODSEQ its flags are as of (every flag
 * change after it has a higher modseq in the index). */
struct imap_idle_view {
	struct imap_seq_range *ranges;   /* ascending, disjoint */
	unsigned range_count;
	uint32_t count;                  /* messages */
	uint64_t modseq;
	uint32_t *recent;                /* ascending UIDs */
	unsigned recent_count;
};
/* The view of s->box (worker thread) / its release. */
struct imap_idle_view *imap_idle_view_save(const struct imap_session *s);
void imap_idle_view_free(struct imap_idle_view **view);

/* What the client has been told about a message (for change detection). */
struct imap_view_msg {
	uint32_t uid, flags, keywords;
};

struct imap_session {
	struct conn *conn;
	struct mf_context *ctx;
	const struct mf_limits *limits;
	struct imap_parser *parser;
	enum imap_state state;
	enum imap_line_mode line_mode;
	char line_tag[IMAP_TAG_MAX + 1];   /* tag of the AUTHENTICATE / IDLE */
	bool dispatching;
	bool starttls_pending;
	bool compress_pending;             /* COMPRESS done: stop parsing this input */
	bool job_running;
	struct imap_job *job;              /* running or sending its output */
	unsigned bad_commands;

	size_t out_pos;                    /* bytes of job->out queued so far */

	/* APPEND with a streamed literal */
	struct buf append_data;
	bool append_streaming;
	bool append_too_big;

	struct dir_user_info user;
	struct mailbox *box;               /* SELECTED state */
	bool read_only;
	bool idle_poll_due;                /* woken while a job ran */
	uint64_t idle_last_poll_ms;
	uint64_t idle_keepalive_ms;
	struct mailbox_watcher *idle_watcher;  /* while idling on box */
	/* While idling, box holds no messages (mailbox_drop_msgs()): this is
	 * what the client knows, until the next sync restores box. */
	struct imap_idle_view *idle_view;
	/* mailboxes the running command changes (imap_notify_*) */
	char *notify_path;                 /* store path (the selected box) */
	char *notify_name;                 /* a mailbox name of the user */

	/* ENABLE (RFC 5161): IMAP4rev2 (RFC 9051), UTF8=ACCEPT (RFC 6855) */
	bool imap4rev2;
	bool utf8_accept;
	/* SEARCHRES (RFC 5182): the UIDs SEARCH RETURN (SAVE) kept as "$",
	   ascending, of the mailbox named searchres_box (mf_free both) */
	uint32_t *searchres;
	unsigned searchres_count;
	char *searchres_box;

	/* CONDSTORE / QRESYNC (RFC 7162), enabled by ENABLE or first use */
	bool condstore;
	bool qresync;
	/* keywords of s->box (bit = index) named in the last FLAGS response */
	uint32_t keywords_told;
};

/* ---- imap-session.c ---- */
/* Queues text (a complete response line or a part of one). */
void imap_write(struct imap_session *s, const void *data, size_t len);
void imap_printf(struct imap_session *s, const char *fmt, ...) MF_PRINTF(2, 3);
/* "<tag> OK|NO text": resets the bad-command count. */
void imap_tagged(struct imap_session *s, const char *tag, const char *fmt, ...) MF_PRINTF(3, 4);
/* "<tag> BAD text" (or "* BAD"): counts toward bad_commands_max. */
void imap_bad(struct imap_session *s, const char *tag, const char *fmt, ...) MF_PRINTF(3, 4);
struct imap_job *imap_job_new(struct imap_session *s, const char *tag, imap_work_fn *work);
void imap_job_start(struct imap_job *job);
void imap_process_input(struct imap_session *s);
/* Inactivity timeout once logged in: the configured idle timeout, but never
 * under the 30 minutes RFC 3501 5.4 asks for. */
unsigned imap_auth_timeout(const struct imap_session *s);
/* LOGINDISABLED (imap-cmd-auth.c): imap { require_tls } is set and the
 * connection is not (yet) TLS, so LOGIN and AUTHENTICATE are refused. */
bool imap_login_disabled(struct imap_session *s);
/* Mailbox names on the wire for this session (imap-cmd-list.c): UTF-8
 * once UTF8=ACCEPT or IMAP4rev2 is enabled (RFC 6855 3, RFC 9051 5.1),
 * modified UTF-7 otherwise; the store keeps modified UTF-7. The first is
 * imap_mailbox_name() after that conversion; the second appends name (as
 * the store knows it) as a string. */
bool imap_client_mailbox_name(const struct imap_session *s, const struct imap_arg *arg,
			      char *name, size_t size);
void imap_append_mailbox_name(const struct imap_session *s, struct buf *out, const char *name);
/* The CAPABILITY list (without "* CAPABILITY "). */
void imap_capabilities(struct imap_session *s, struct buf *out);
/* The mailbox name (astring) as the store knows it: "INBOX" for any case
 * of INBOX. False when invalid (not canonical modified UTF-7, or refused by
 * the store's rules). */
bool imap_mailbox_name(const struct imap_arg *arg, char *name, size_t size);

/* ---- command handlers (imap-cmd-*.c) ---- */
typedef void imap_cmd_fn(struct imap_session *s, const struct imap_command *cmd);

imap_cmd_fn imap_cmd_capability, imap_cmd_noop, imap_cmd_logout, imap_cmd_login,
	imap_cmd_authenticate, imap_cmd_starttls, imap_cmd_id, imap_cmd_enable,
	imap_cmd_namespace;
imap_cmd_fn imap_cmd_list, imap_cmd_lsub, imap_cmd_create, imap_cmd_delete, imap_cmd_rename,
	imap_cmd_subscribe, imap_cmd_unsubscribe, imap_cmd_status;
imap_cmd_fn imap_cmd_select, imap_cmd_examine, imap_cmd_close, imap_cmd_unselect,
	imap_cmd_check, imap_cmd_expunge, imap_cmd_store, imap_cmd_copy, imap_cmd_move,
	imap_cmd_idle, imap_cmd_append;
imap_cmd_fn imap_cmd_fetch, imap_cmd_search;
imap_cmd_fn imap_cmd_getquotaroot, imap_cmd_getquota, imap_cmd_setquota;

/* Queues the cache entry (mailbox-cache.h) of box->msgs[idx], parsed as
 * msg; written by mailbox_cache_flush() (imap-fetch.c). */
struct mime_message;
void imap_cache_add(struct mailbox *box, unsigned idx, const struct mime_message *msg);

/* ---- SEARCHRES (imap-search.c) ---- */
/* "$" (RFC 5182) for another command: the saved result as a UID set
 * ("1:3,7"; "" when empty or saved in another mailbox), mf_malloc'ed. A
 * caller sees set "$" (seq or UID command alike), resolves this as a UID
 * set, and treats "" as matching nothing (not as an error). */
char *imap_searchres_uidset(const struct imap_session *s);
/* Empties "$": SELECT, EXAMINE, UNSELECT and CLOSE call it (RFC 5182 2.1);
 * also frees it at the end of the session. */
void imap_searchres_reset(struct imap_session *s);

/* COMPRESS (imap-cmd-compress.c). */
imap_cmd_fn imap_cmd_compress;

/* The AUTHENTICATE response line (imap-cmd-auth.c). */
void imap_auth_response(struct imap_session *s, const char *line, size_t len);
/* The line while idling (imap-idle.c). */
void imap_idle_line(struct imap_session *s, const char *line);
/* Leaves IDLE (DONE, or a bad line): stops watching, brings back the
 * mailbox's messages when they were let go, then "<tag> OK|BAD text". */
void imap_idle_end(struct imap_session *s, bool ok, const char *text);
/* Once a second from the frontend while idling and no job runs: the
 * keepalive, and the sync a wake asked for during a job. */
void imap_idle_tick(struct imap_session *s);
/* session_wake(): the watched mailbox changed (imap-idle.c). */
void imap_idle_wake(struct imap_session *s);
/* Before a command runs: remembers which mailboxes it may change; after
 * (no job left for it): wakes their idlers in this process. */
void imap_notify_begin(struct imap_session *s, const struct imap_command *cmd);
void imap_notify_end(struct imap_session *s);
/* APPEND with the message data (imap-cmd-append.c). */
void imap_append_run(struct imap_session *s, const struct imap_command *cmd,
		     const unsigned char *data, size_t len);
/* True when a literal at list depth of the APPEND being parsed (cmd) is
 * its message: at the top level, or alone in "UTF8 (" ... ")". */
bool imap_append_literal_is_message(const struct imap_command *cmd, unsigned depth);

/* ---- helpers in imap-cmd-mailbox.c ---- */
/* The flag list "(\Seen $Label1 ...)" of msg in s->box (\Recent only
 * before IMAP4rev2). */
void imap_write_flags(const struct imap_session *s, const struct mailbox_msg *m, struct buf *out);
/* "* FLAGS (...)" and "* OK [PERMANENTFLAGS (...)]" for s->box when it has
 * keywords the client has not been told of (or always when force), so that
 * no FETCH names a flag missing from FLAGS (RFC 3501 7.2.6). */
void imap_write_flag_lists(struct imap_session *s, bool force, struct buf *out);
/* Snapshot of what the client knows; free(). */
struct imap_view_msg *imap_view_save(const struct mailbox *box, unsigned *count_r);
/* Syncs s->box (worker thread) and writes the untagged EXPUNGE / EXISTS /
 * RECENT / FETCH FLAGS updates against the snapshot taken before. */
int imap_sync_box(struct imap_session *s, struct buf *out, const char **error_r);
/* Resolves a sequence or UID set against s->box into message indexes
 * (ascending). -1 on a syntax error. *idx_r: free(). */
int imap_msgset(struct imap_session *s, const char *set, bool uid, unsigned **idx_r,
		unsigned *count_r);
/* Before a UID command (worker thread): when the mailbox changed, syncs and
 * writes the updates into job->out, then resolves the UID set again (set
 * NULL: sync only). -1 only when set is invalid. */
int imap_uid_refresh(struct imap_job *job, const char *set, unsigned **idx_r, unsigned *count_r);
/* Flags parsed from a list of flag atoms; keyword names into kw (up to
 * MAILBOX_KEYWORDS_MAX). false on an invalid flag. */
bool imap_parse_flags(const struct imap_arg *list, size_t count, uint32_t *flags_r,
		      const char **kw, unsigned *kw_count_r);

/* ---- CONDSTORE / QRESYNC (imap-condstore.c) ---- */
/* ENABLE: true when name is CONDSTORE or QRESYNC (which is now on). */
bool imap_enable_modseq(struct imap_session *s, const char *name);
/* A CONDSTORE enabling command (FETCH MODSEQ, SEARCH MODSEQ, STORE
 * UNCHANGEDSINCE...) turns CONDSTORE on; the first one in a selected
 * mailbox sends "* OK [HIGHESTMODSEQ n]". */
void imap_condstore_enabling(struct imap_session *s);
/* A mod-sequence value (0 .. 2^63-1) from an atom. */
bool imap_parse_modseq(const struct imap_arg *arg, uint64_t *modseq_r);
/* Ascending UIDs as a compact set ("1:3,7"). */
void imap_write_uidset(struct buf *out, const uint32_t *uids, size_t count);
/* "* VANISHED (EARLIER) <set>" of UIDs expunged after modseq, within known
 * (resolved UID ranges; NULL = all); nothing when there are none. */
void imap_write_vanished_since(struct imap_session *s, uint64_t modseq,
			       const struct imap_seq_range *known, size_t nknown, struct buf *out);
/* " MODSEQ (<n>)" after a FETCH item list, when CONDSTORE is on. */
void imap_write_modseq(struct imap_session *s, const struct mailbox_msg *m, struct buf *out);

#endif
