/* mailbox-save.c: messages entering a mailbox (IMAP APPEND and COPY) and the
 * STATUS counts. An append goes through store_deliver() (tmp/ -> fsync ->
 * rename into new/, lz4 if configured), then into cur/ with its flags; a copy
 * hard-links the file under a new unique name (or copies it when the store
 * cannot link). Either way uidlist_sync() then gives the UIDs. */
#include "store/mailbox-private.h"
#include "store/maildir.h"
#include "store/store-private.h"
#include "store/uidlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* CRLF -> LF, as messages are stored. */
static unsigned char *to_lf(const unsigned char *data, size_t len, size_t *len_r)
{
	unsigned char *out = mf_malloc(len + 1);
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		out[n++] = data[i];
	}
	*len_r = n;
	return out;
}

static const char *folder_arg(const char *name)
{
	return maildir_folder_is_inbox(name) ? NULL : name;
}

static uint32_t keywords_bits(struct mailbox *box, const char *const *keywords, unsigned count)
{
	uint32_t bits = 0;

	for (unsigned i = 0; i < count; i++) {
		int idx = mailbox_keyword_index(box, keywords[i], true);
		if (idx >= 0)
			bits |= 1u << idx;
	}
	return bits;
}

/* A view of box without messages: enough for keywords and paths. */
static int box_shell(struct store *store, const char *domain, const char *user, const char *name,
		     struct mailbox *box, const char **error_r)
{
	memset(box, 0, sizeof(*box));
	box->store = store;
	box->path = maildir_mailbox_path(domain, user, folder_arg(name));
	if (box->path == NULL) {
		*error_r = "invalid mailbox name";
		return -1;
	}
	if (mailbox_keywords_load(box) < 0) {
		*error_r = "cannot read the keywords file";
		free(box->path);
		return -1;
	}
	return 0;
}

static void box_shell_free(struct mailbox *box)
{
	mailbox_keywords_clear(box);
	free(box->path);
}

static int uid_of(struct store *store, const char *path, const char *const *bases, unsigned count,
		  uint32_t *uid_validity_r, uint32_t *uids_r, const char **error_r)
{
	struct uidlist *ul;

	if (uidlist_sync(store, path, &ul, error_r) < 0)
		return -1;
	*uid_validity_r = ul->uid_validity;
	for (unsigned i = 0; i < count; i++) {
		const struct uidlist_rec *rec = bases[i] != NULL ? uidlist_lookup(ul, bases[i]) : NULL;
		uids_r[i] = rec != NULL ? rec->uid : 0;
	}
	uidlist_free(&ul);
	return 0;
}

/* Applies an operation to the delivered file wherever it is now: a
 * session syncing the mailbox may move it from new/ to cur/ (renaming it)
 * at any moment. */
static int on_delivered(struct mailbox *box, struct mailbox_msg *m,
			int (*op)(struct mailbox *box, const char *path, void *ctx), void *ctx)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		char *path = mailbox_msg_path(box, m);
		int ret = op(box, path, ctx);
		free(path);
		if (ret == 0 || errno != ENOENT)
			return ret;
		if (mailbox_msg_relocate(box, m) < 0)
			return -1;
	}
	return -1;
}

struct rename_ctx {
	const struct mailbox_msg *m;
	const char *name;
};

/* Renames within the folder the file is in now: a file that a session has
 * moved to cur/ (and so given \Recent) must not go back to new/. */
static int op_rename(struct mailbox *box, const char *path, void *ctx)
{
	const struct rename_ctx *rc = ctx;
	char *to = mf_asprintf("%s/%s/%s", box->path, rc->m->in_new ? "new" : "cur", rc->name);
	int ret = io_rename(store_io(box->store), path, to);

	free(to);
	return ret;
}

static int op_utimes(struct mailbox *box, const char *path, void *ctx)
{
	int64_t date = *(const int64_t *)ctx;

	return io_utimes(store_io(box->store), path, date, date);
}

static int append_finish(struct mailbox *box, const char *basename, uint32_t flags,
			 uint32_t keywords, int64_t date, const char **error_r)
{
	struct mailbox_msg m = { .filename = mf_strdup(basename), .in_new = true };
	char *name = mailbox_name_with_flags(basename, flags, keywords);
	/* the flags go into the name but the file stays in new/: the first
	 * session to see it gets \Recent (RFC 3501 2.3.2) */
	struct rename_ctx rc = { &m, name };
	int ret = 0;

	if ((flags != 0 || keywords != 0) && on_delivered(box, &m, op_rename, &rc) == 0) {
		free(m.filename);
		m.filename = name;
		name = NULL;
	} else if (flags != 0 || keywords != 0) {
		ret = -1;
	}
	if (ret == 0 && date > 0 && on_delivered(box, &m, op_utimes, &date) < 0)
		ret = -1;
	if (ret < 0) {
		*error_r = "cannot set the message's flags or date";
		errno = EIO;    /* not ENOENT, which APPEND answers with TRYCREATE */
	}
	free(m.filename);
	free(name);
	return ret;
}

/* The message's file in new/ with its flags and date; *box_r: the shell
 * (keywords, path), *basename_r its base name. */
static int append_file(struct store *store, const char *domain, const char *user, const char *name,
		       const void *data, size_t len, uint32_t flags, const char *const *keywords,
		       unsigned keyword_count, int64_t date, struct mailbox *box_r,
		       char **basename_r, const char **error_r)
{
	size_t lf_len;
	unsigned char *lf = to_lf(data, len, &lf_len);
	struct iovec iov = { .iov_base = lf, .iov_len = lf_len };
	int ret;

	*basename_r = NULL;
	if (!maildir_folder_is_inbox(name) && store_folder_exists(store, domain, user, name) != 1) {
		free(lf);
		*error_r = "no such mailbox";
		errno = ENOENT;
		return -1;
	}
	ret = store_deliver(store, domain, user, folder_arg(name), &iov, 1, lf_len, basename_r, error_r);
	free(lf);
	if (ret < 0)
		return -1;
	if (box_shell(store, domain, user, name, box_r, error_r) < 0) {
		mf_free(basename_r);
		return -1;
	}
	uint32_t kw = keywords_bits(box_r, keywords, keyword_count);
	if (append_finish(box_r, *basename_r, flags, kw, date, error_r) < 0) {
		box_shell_free(box_r);
		mf_free(basename_r);
		return -1;
	}
	return 0;
}

int mailbox_append(struct store *store, const char *domain, const char *user, const char *name,
		   const void *data, size_t len, uint32_t flags, const char *const *keywords,
		   unsigned keyword_count, int64_t date, uint32_t *uid_validity_r,
		   uint32_t *uid_r, const char **error_r)
{
	struct mailbox box;
	char *basename;

	if (append_file(store, domain, user, name, data, len, flags, keywords, keyword_count, date,
			&box, &basename, error_r) < 0)
		return -1;
	const char *base = basename;
	int ret = uid_of(store, box.path, &base, 1, uid_validity_r, uid_r, error_r);
	box_shell_free(&box);
	free(basename);
	return ret;
}

int mailbox_append_unsynced(struct store *store, const char *domain, const char *user,
			    const char *name, const void *data, size_t len, uint32_t flags,
			    const char *const *keywords, unsigned keyword_count, int64_t date,
			    char **basename_r, const char **error_r)
{
	struct mailbox box;

	if (append_file(store, domain, user, name, data, len, flags, keywords, keyword_count, date,
			&box, basename_r, error_r) < 0)
		return -1;
	box_shell_free(&box);
	return 0;
}

uint32_t mailbox_uid_of_base(const struct mailbox *box, const char *basename)
{
	size_t len = maildir_base_len(basename);

	for (unsigned i = box->count; i > 0; i--) {
		const char *name = box->msgs[i - 1].filename;
		if (maildir_base_len(name) == len && strncmp(name, basename, len) == 0)
			return box->msgs[i - 1].uid;
	}
	return 0;
}

/* ---- copy ---- */

static int copy_by_content(struct mailbox *src, unsigned idx, const char *to, const char **error_r)
{
	struct mf_io *io = store_io(src->store);
	struct mailbox_msg *m = &src->msgs[idx];
	unsigned char *data;
	size_t len;
	struct io_file *file;
	char *tmp;
	int ret;

	if (mailbox_read(src, idx, SIZE_MAX, &data, &len, error_r) < 0)
		return -1;
	tmp = mf_asprintf("%s.tmp", to);
	ret = io_open(io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &file);
	if (ret == 0) {
		ret = io_write_all(file, data, len);
		if (ret == 0 && src->store->set.fsync)
			ret = io_fsync(file);
		if (io_close(&file) < 0)
			ret = -1;
		if (ret == 0)
			io_utimes(io, tmp, m->internal_date, m->internal_date);
		if (ret == 0)
			ret = io_rename(io, tmp, to);
		if (ret < 0)
			io_unlink(io, tmp);
	}
	if (ret < 0)
		*error_r = "cannot copy the message";
	free(tmp);
	free(data);
	return ret;
}

/* Copies (hard link, else the content) or moves (rename: atomic, so of two
 * sessions moving one message exactly one succeeds) src->msgs[idx] into
 * dest's new/ with its flags in the name, so that the copy is \Recent in
 * the first session that sees it (RFC 3501 6.4.7). *to_r: the new file's path. A copy or
 * move of a message that is gone returns 1 (nothing done). */
static int transfer_one(struct mailbox *src, unsigned idx, struct mailbox *dest, bool move,
			char **base_r, char **to_r, const char **error_r)
{
	struct mailbox_msg *m = &src->msgs[idx];
	uint32_t kw = 0;
	char *based = maildir_unique_name(src->store->host, store_next_counter(src->store),
					  m->size, m->vsize);
	int ret = -1;

	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if ((m->keywords & (1u << i)) != 0 && src->keywords[i] != NULL) {
			int d = mailbox_keyword_index(dest, src->keywords[i], true);
			if (d >= 0)
				kw |= 1u << d;
		}
	}
	char *name = mailbox_name_with_flags(based, m->flags, kw);
	char *to = mf_asprintf("%s/%s/%s", dest->path, "new", name);
	for (int attempt = 0; attempt < 3 && ret < 0; attempt++) {
		char *from = mailbox_msg_path(src, m);
		ret = move ? io_rename(store_io(src->store), from, to) : io_link(store_io(src->store), from, to);
		free(from);
		if (ret < 0 && errno == ENOENT && attempt < 2 && mailbox_msg_relocate(src, m) == 0)
			continue;
		if (ret < 0 && errno == ENOENT)
			ret = 1;     /* moved or expunged by another session meanwhile */
		else if (ret < 0 && !move)
			ret = copy_by_content(src, idx, to, error_r);
		else if (ret < 0) {
			*error_r = "cannot move the message";
		}
		break;
	}
	free(name);
	if (ret == 0) {
		*base_r = based;
		*to_r = to;
	} else {
		free(based);
		free(to);
	}
	return ret;
}

int mailbox_copy(struct mailbox *box, const unsigned *idxs, unsigned count,
		 const char *dest_name, bool move, uint32_t *uid_validity_r, uint32_t *uids_r,
		 const char **error_r)
{
	struct mailbox dest;
	char **bases = mf_calloc(count + 1, sizeof(*bases));
	int ret = 0;

	if (!maildir_folder_is_inbox(dest_name) &&
	    store_folder_exists(box->store, box->domain, box->user, dest_name) != 1) {
		free(bases);
		*error_r = "no such mailbox";
		errno = ENOENT;
		return -1;
	}
	if (box_shell(box->store, box->domain, box->user, dest_name, &dest, error_r) < 0) {
		free(bases);
		return -1;
	}
	char **made = mf_calloc(count + 1, sizeof(*made));
	for (unsigned i = 0; i < count && ret == 0; i++)
		ret = transfer_one(box, idxs[i], &dest, move, &bases[i], &made[i], error_r) < 0 ? -1 : 0;
	if (ret < 0 && !move) {
		/* a failed COPY leaves the destination as it was (RFC 3501 6.4.7) */
		for (unsigned i = 0; i < count; i++) {
			if (made[i] != NULL)
				io_unlink(store_io(box->store), made[i]);
		}
	}
	if (ret == 0 || move)
		ret = uid_of(box->store, dest.path, (const char *const *)bases, count,
			     uid_validity_r, uids_r, error_r) < 0 ? -1 : ret;
	for (unsigned i = 0; i < count; i++) {
		free(bases[i]);
		free(made[i]);
	}
	free(made);
	free(bases);
	box_shell_free(&dest);
	return ret;
}

int mailbox_status(struct store *store, const char *domain, const char *user, const char *name,
		   struct mailbox_status *st_r, const char **error_r)
{
	struct mailbox *box;

	if (mailbox_open(store, domain, user, name, true, &box, error_r) < 0)
		return -1;
	memset(st_r, 0, sizeof(*st_r));
	st_r->messages = box->count;
	st_r->uid_next = box->uid_next;
	st_r->uid_validity = box->uid_validity;
	st_r->highest_modseq = box->highest_modseq;
	for (unsigned i = 0; i < box->count; i++) {
		if (box->msgs[i].in_new)
			st_r->recent++;
		if ((box->msgs[i].flags & MAILBOX_FLAG_SEEN) == 0)
			st_r->unseen++;
		st_r->size += box->msgs[i].vsize;
	}
	mailbox_free(&box);
	return 0;
}
