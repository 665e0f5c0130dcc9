/* lmtp-delivery.c: what LMTP does with recipients and messages.
 *
 * RCPT: the directory (in memory, fast) resolves the address on the loop
 * thread into one user or an alias's members; quota and "+folder" checks
 * read the store and run as a blocking job. Mailboxes named by several
 * RCPTs (or by a user and an alias holding it) get the message once.
 *
 * After DATA one blocking job delivers to every mailbox in turn: quota
 * re-check with the real size, then store_deliver() with Return-Path and
 * Delivered-To prepended. Only then, on the loop thread, one reply per RCPT
 * in RCPT order: 250 only when every mailbox behind that RCPT has the
 * message durably; otherwise the most retry-friendly failure (a temporary
 * one wins over a permanent one, accepting a duplicate for members that got
 * it over a lost message). An alias is accepted at RCPT only when all its
 * members pass the checks. */
#include "lmtpd/lmtp-private.h"
#include "cluster/directory.h"
#include "store/store.h"
#include "store/mailbox-watch.h"
#include "lib/log.h"

#include <errno.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#define LMTP_RESOLVE_SMALL 8
#define LMTP_MSGID_LOG_MAX 200

struct lmtp_rcpt_job {
	struct store *store;
	char *address;                 /* lower-cased, for replies and Delivered-To */
	char detail[DIR_NAME_MAX + 1]; /* "+detail" of user+detail@domain */
	uint64_t size;                 /* announced SIZE, 0 when none */
	struct lmtp_target *cands;
	unsigned count;
	enum lmtp_status status;
};

struct lmtp_deliver_job {
	struct store *store;
	struct lmtp_txn *txn;          /* the session's; untouched while the job runs */
};

static char *lowercase_dup(const char *s)
{
	char *out = mf_strdup(s), *p;

	for (p = out; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

static void target_free(struct lmtp_target *t)
{
	mf_free(&t->localpart);
	mf_free(&t->domain);
	mf_free(&t->folder);
	mf_free(&t->basename);
	mf_free(&t->error);
}

static void rcpt_job_free(struct lmtp_rcpt_job **_job)
{
	struct lmtp_rcpt_job *job = *_job;
	unsigned i;

	for (i = 0; i < job->count; i++)
		target_free(&job->cands[i]);
	mf_free(&job->cands);
	mf_free(&job->address);
	mf_free(_job);
}

static const char *quota_reply(const struct lmtp_session *s)
{
	return s->ctx->config->lmtp_quota_temporary ? "452 4.2.2" : "552 5.2.2";
}

/* Would size more bytes pass limit? With size 0 (not announced) a full
 * mailbox is refused already. */
static bool over_limit(uint64_t used, uint64_t size, uint64_t limit)
{
	if (size == 0)
		return used >= limit;
	return used > limit || size > limit - used;
}

/* A usage figure at most LMTP_USAGE_RECENT_MS old is enough while the user
 * is well below the quota; near it, the exact (slower: it lists every changed
 * new/ and cur/) figure decides. */
#define LMTP_USAGE_RECENT_MS 1000
static int user_usage(struct store *store, const struct lmtp_target *t, uint64_t size,
		      uint64_t *bytes_r, uint64_t *messages_r)
{
	uint64_t margin = t->quota_bytes / 10;

	if (store_user_usage_recent(store, t->domain, t->localpart, LMTP_USAGE_RECENT_MS,
				    bytes_r, messages_r) == 0 &&
	    !over_limit(*bytes_r + margin, size, t->quota_bytes))
		return 0;
	if (store_user_usage(store, t->domain, t->localpart, bytes_r, messages_r) == 0)
		return 0;
	*bytes_r = 0;
	return errno == ENOENT ? 0 : -1;
}

static enum lmtp_status quota_check(struct store *store, const struct lmtp_target *t,
				    uint64_t size)
{
	uint64_t bytes = 0, messages = 0;

	if (t->quota_bytes != 0) {
		if (user_usage(store, t, size, &bytes, &messages) < 0)
			return LMTP_ST_TEMPFAIL;
		if (over_limit(bytes, size, t->quota_bytes))
			return LMTP_ST_OVER_QUOTA;
	}
	if (t->domain_quota_bytes != 0) {
		bytes = 0;
		if (store_domain_usage(store, t->domain, &bytes) < 0) {
			if (errno != ENOENT)
				return LMTP_ST_TEMPFAIL;
			bytes = 0;
		}
		if (over_limit(bytes, size, t->domain_quota_bytes))
			return LMTP_ST_OVER_QUOTA;
	}
	return LMTP_ST_OK;
}

/* "+detail" names a folder: use it when it exists, else INBOX. */
static enum lmtp_status folder_check(struct store *store, const char *detail,
				     struct lmtp_target *t)
{
	int ret;

	if (detail[0] == '\0' || strcasecmp(detail, "INBOX") == 0 ||
	    !store_folder_name_valid(detail))
		return LMTP_ST_OK;
	ret = store_folder_exists(store, t->domain, t->localpart, detail);
	if (ret > 0)
		t->folder = mf_strdup(detail);
	else if (ret < 0 && errno != ENOENT)
		return LMTP_ST_TEMPFAIL;
	return LMTP_ST_OK;
}

static void rcpt_work(void *arg)
{
	struct lmtp_rcpt_job *job = arg;
	unsigned i;

	job->status = LMTP_ST_OK;
	for (i = 0; i < job->count && job->status == LMTP_ST_OK; i++) {
		job->status = folder_check(job->store, job->detail, &job->cands[i]);
		if (job->status == LMTP_ST_OK)
			job->status = quota_check(job->store, &job->cands[i], job->size);
	}
}

static bool rcpt_job_needs_store(const struct lmtp_rcpt_job *job)
{
	unsigned i;

	if (job->detail[0] != '\0')
		return true;
	for (i = 0; i < job->count; i++) {
		if (job->cands[i].quota_bytes != 0 || job->cands[i].domain_quota_bytes != 0)
			return true;
	}
	return false;
}

static unsigned txn_find_target(const struct lmtp_txn *txn, const struct lmtp_target *t)
{
	unsigned i;

	for (i = 0; i < txn->target_count; i++) {
		if (strcasecmp(txn->targets[i].localpart, t->localpart) == 0 &&
		    strcasecmp(txn->targets[i].domain, t->domain) == 0)
			return i;
	}
	return txn->target_count;
}

/* Moves the job's candidates into the transaction as a new RCPT. */
static void txn_add_rcpt(struct lmtp_txn *txn, struct lmtp_rcpt_job *job)
{
	struct lmtp_rcpt *r;
	unsigned i, idx;

	if (txn->rcpt_count == txn->rcpt_alloc) {
		txn->rcpt_alloc = txn->rcpt_alloc == 0 ? 4 : txn->rcpt_alloc * 2;
		txn->rcpts = mf_realloc(txn->rcpts, txn->rcpt_alloc * sizeof(*txn->rcpts));
	}
	r = &txn->rcpts[txn->rcpt_count];
	memset(r, 0, sizeof(*r));
	r->address = job->address;
	job->address = NULL;
	r->targets = mf_calloc(job->count, sizeof(*r->targets));
	for (i = 0; i < job->count; i++) {
		idx = txn_find_target(txn, &job->cands[i]);
		if (idx == txn->target_count) {
			if (txn->target_count == txn->target_alloc) {
				txn->target_alloc = txn->target_alloc == 0 ? 4 : txn->target_alloc * 2;
				txn->targets = mf_realloc(txn->targets,
							  txn->target_alloc * sizeof(*txn->targets));
			}
			txn->targets[idx] = job->cands[i];
			txn->targets[idx].rcpt_idx = txn->rcpt_count;
			txn->target_count++;
			memset(&job->cands[i], 0, sizeof(job->cands[i]));
		}
		r->targets[r->target_count++] = idx;
	}
	txn->rcpt_count++;
}

static void rcpt_finish(struct lmtp_session *s, struct lmtp_rcpt_job *job)
{
	const char *peer = conn_peer_addr(s->conn);

	switch (job->status) {
	case LMTP_ST_OK:
		lmtp_reply(s, "250 2.1.5 <%s> Ok", job->address);
		txn_add_rcpt(&s->txn, job);
		break;
	case LMTP_ST_OVER_QUOTA:
		log_info("lmtp(%s): qid=%s from=<%s> to=<%s>: rejected: over quota", peer,
			 s->txn.queue_id, s->txn.sender, job->address);
		lmtp_reply(s, "%s <%s> Mailbox full (over quota)", quota_reply(s), job->address);
		break;
	default:
		log_warn("lmtp(%s): qid=%s to=<%s>: recipient check failed", peer,
			 s->txn.queue_id, job->address);
		lmtp_reply(s, "451 4.3.0 <%s> Temporary failure, try again later", job->address);
		break;
	}
	rcpt_job_free(&job);
}

static void rcpt_done(void *session, struct conn *conn, void *arg)
{
	struct lmtp_session *s = session;
	struct lmtp_rcpt_job *job = arg;

	s->busy = false;
	if (conn_is_closing(conn)) {
		rcpt_job_free(&job);
		return;
	}
	rcpt_finish(s, job);
	lmtp_process_input(s);
}

/* Directory lookup; returns the member count (users_r malloc()ed) or -1
 * after replying. */
static int rcpt_resolve(struct lmtp_session *s, const char *address,
			struct dir_user_info **users_r, char *detail, size_t detail_size)
{
	struct directory *dir = s->ctx->directory;
	unsigned max = LMTP_RESOLVE_SMALL;
	const char *error = "no directory";
	int n = -1;

	for (;;) {
		*users_r = mf_calloc(max, sizeof(**users_r));
		detail[0] = '\0';
		if (dir != NULL)
			n = directory_resolve(dir, address, *users_r, max, detail, detail_size, &error);
		if ((n >= 0 && n < (int)max) || max == LMTP_ALIAS_FANOUT_MAX || dir == NULL)
			break;
		/* a big alias (the directory fails or fills the array): more room */
		mf_free(users_r);
		max = LMTP_ALIAS_FANOUT_MAX;
	}
	if (n < 0) {
		log_warn("lmtp(%s): directory lookup for <%s> failed: %s",
			 conn_peer_addr(s->conn), address, error);
		lmtp_reply(s, "451 4.3.0 <%s> Temporary directory failure", address);
	} else if (n == 0) {
		log_info("lmtp(%s): qid=%s from=<%s> to=<%s>: rejected: user unknown",
			 conn_peer_addr(s->conn), s->txn.queue_id, s->txn.sender, address);
		lmtp_reply(s, "550 5.1.1 <%s> User unknown", address);
		n = -1;
	} else if (s->txn.target_count + (unsigned)n > LMTP_TARGETS_MAX) {
		lmtp_reply(s, "452 4.5.3 <%s> Too many recipients", address);
		n = -1;
	}
	if (n < 0)
		mf_free(users_r);
	return n;
}

void lmtp_rcpt_begin(struct lmtp_session *s, const struct lmtp_path *path)
{
	struct lmtp_rcpt_job *job;
	struct dir_user_info *users;
	char detail[DIR_NAME_MAX + 1];
	int n, i;

	if (s->txn.rcpt_count >= s->limits->rcpt_max) {
		lmtp_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	n = rcpt_resolve(s, path->address, &users, detail, sizeof(detail));
	if (n < 0)
		return;
	job = mf_calloc(1, sizeof(*job));
	job->store = s->ctx->store;
	job->address = lowercase_dup(path->address);
	memcpy(job->detail, detail, sizeof(job->detail));
	job->detail[sizeof(job->detail) - 1] = '\0';
	job->size = s->txn.size_given ? s->txn.size : 0;
	job->cands = mf_calloc((size_t)n, sizeof(*job->cands));
	job->count = (unsigned)n;
	for (i = 0; i < n; i++) {
		job->cands[i].localpart = mf_strdup(users[i].localpart);
		job->cands[i].domain = mf_strdup(users[i].domain);
		job->cands[i].quota_bytes = users[i].quota_bytes;
		job->cands[i].domain_quota_bytes = users[i].domain_quota_bytes;
	}
	mf_free(&users);
	if (!rcpt_job_needs_store(job)) {
		job->status = LMTP_ST_OK;
		rcpt_finish(s, job);
		return;
	}
	s->busy = true;
	conn_run_blocking(s->conn, rcpt_work, rcpt_done, job);
}

/* --- delivery --- */

static enum lmtp_status status_from_errno(int err)
{
	switch (err) {
	case ENOSPC:
		return LMTP_ST_NO_SPACE;
	case EDQUOT:
		return LMTP_ST_OVER_QUOTA;
	case EINVAL:
		return LMTP_ST_PERMFAIL;
	default:
		return LMTP_ST_TEMPFAIL;
	}
}

static void deliver_one(struct store *store, struct lmtp_txn *txn, struct lmtp_target *t)
{
	char *return_path = mf_asprintf("Return-Path: <%s>\n", txn->sender);
	char *delivered_to = mf_asprintf("Delivered-To: %s\n", txn->rcpts[t->rcpt_idx].address);
	struct iovec iov[3] = {
		{ return_path, strlen(return_path) },
		{ delivered_to, strlen(delivered_to) },
		{ txn->message.data, txn->message.len },
	};
	size_t size = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len;
	const char *error = NULL;
	int ret;

	t->status = quota_check(store, t, size);
	if (t->status == LMTP_ST_OVER_QUOTA)
		t->error = mf_strdup("over quota");
	else if (t->status != LMTP_ST_OK)
		t->error = mf_strdup("quota lookup failed");
	if (t->status == LMTP_ST_OK) {
		ret = store_deliver(store, t->domain, t->localpart, t->folder, iov, 3, size,
				    &t->basename, &error);
		if (ret < 0 && errno == ENOENT && t->folder != NULL) {
			/* the folder went away since RCPT: INBOX it is */
			mf_free(&t->folder);
			ret = store_deliver(store, t->domain, t->localpart, NULL, iov, 3, size,
					    &t->basename, &error);
		}
		if (ret < 0) {
			int err = errno;

			t->status = status_from_errno(err);
			t->error = mf_asprintf("%s (%s)", error != NULL ? error : "store error",
					       strerror(err));
		}
	}
	free(return_path);
	free(delivered_to);
}

static void deliver_work(void *arg)
{
	struct lmtp_deliver_job *job = arg;
	unsigned i;

	for (i = 0; i < job->txn->target_count; i++)
		deliver_one(job->store, job->txn, &job->txn->targets[i]);
}

/* Temporary beats permanent beats success: see the file comment. */
static int status_rank(const struct lmtp_session *s, enum lmtp_status st)
{
	switch (st) {
	case LMTP_ST_OK:
		return 0;
	case LMTP_ST_PERMFAIL:
		return 1;
	case LMTP_ST_OVER_QUOTA:
		return s->ctx->config->lmtp_quota_temporary ? 2 : 1;
	default:
		return 2;
	}
}

static void reply_rcpt(struct lmtp_session *s, const struct lmtp_rcpt *r)
{
	enum lmtp_status worst = LMTP_ST_OK;
	unsigned i;

	for (i = 0; i < r->target_count; i++) {
		enum lmtp_status st = s->txn.targets[r->targets[i]].status;

		if (status_rank(s, st) > status_rank(s, worst))
			worst = st;
	}
	switch (worst) {
	case LMTP_ST_OK:
		lmtp_reply(s, "250 2.1.5 <%s> Ok", r->address);
		break;
	case LMTP_ST_OVER_QUOTA:
		lmtp_reply(s, "%s <%s> Mailbox full (over quota)", quota_reply(s), r->address);
		break;
	case LMTP_ST_NO_SPACE:
		lmtp_reply(s, "452 4.3.1 <%s> Insufficient system storage", r->address);
		break;
	case LMTP_ST_PERMFAIL:
		lmtp_reply(s, "550 5.1.3 <%s> Invalid mailbox name", r->address);
		break;
	default:
		lmtp_reply(s, "451 4.3.0 <%s> Temporary failure, try again later", r->address);
		break;
	}
}

static void log_target(struct lmtp_session *s, const struct lmtp_target *t, const char *msgid)
{
	const struct lmtp_txn *txn = &s->txn;

	log_info("lmtp(%s): qid=%s from=<%s> to=<%s> user=%s@%s folder=%s size=%zu "
		 "message-id=%s: %s%s", conn_peer_addr(s->conn), txn->queue_id, txn->sender,
		 txn->rcpts[t->rcpt_idx].address, t->localpart, t->domain,
		 t->folder != NULL ? t->folder : "INBOX", txn->message.len,
		 msgid[0] != '\0' ? msgid : "(none)",
		 t->status == LMTP_ST_OK ? "stored " : "failed: ",
		 t->status == LMTP_ST_OK ? t->basename : (t->error != NULL ? t->error : "?"));
}

static void deliver_done(void *session, struct conn *conn, void *arg)
{
	struct lmtp_session *s = session;
	struct lmtp_deliver_job *job = arg;
	char msgid[LMTP_MSGID_LOG_MAX];
	unsigned i;

	s->busy = false;
	mf_free(&job);
	if (conn_is_closing(conn)) {
		lmtp_txn_reset(&s->txn);
		return;
	}
	lmtp_find_message_id(s->txn.message.data, s->txn.message.len, msgid, sizeof(msgid));
	for (i = 0; i < s->txn.target_count; i++)
		log_target(s, &s->txn.targets[i], msgid);
	for (i = 0; i < s->txn.target_count; i++)   /* wake this node's idlers now */
		mailbox_watch_notify_mailbox(s->ctx->watch, s->txn.targets[i].domain,
					     s->txn.targets[i].localpart, s->txn.targets[i].folder);
	for (i = 0; i < s->txn.rcpt_count; i++)
		reply_rcpt(s, &s->txn.rcpts[i]);
	lmtp_txn_reset(&s->txn);
	lmtp_process_input(s);
}

void lmtp_deliver_begin(struct lmtp_session *s)
{
	struct lmtp_deliver_job *job = mf_calloc(1, sizeof(*job));

	job->store = s->ctx->store;
	job->txn = &s->txn;
	s->busy = true;
	conn_run_blocking(s->conn, deliver_work, deliver_done, job);
}

void lmtp_reject_too_big(struct lmtp_session *s)
{
	unsigned i;

	for (i = 0; i < s->txn.rcpt_count; i++) {
		log_info("lmtp(%s): qid=%s from=<%s> to=<%s>: rejected: message over %zu bytes",
			 conn_peer_addr(s->conn), s->txn.queue_id, s->txn.sender,
			 s->txn.rcpts[i].address, s->limits->message_size_max);
		lmtp_reply(s, "552 5.3.4 <%s> Message size exceeds fixed limit",
			   s->txn.rcpts[i].address);
	}
}
