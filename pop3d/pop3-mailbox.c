/* pop3-mailbox.c: the POP3 maildrop on the store; see pop3-mailbox.h.
 *
 * Sizes: POP3 reports octets with CRLF line ends, while files hold LF. The
 * wire size comes from ",W=<n>" in the file name when a writer put it there,
 * else from the uidlist record's W extension field, else the file is read
 * once and the result cached in that W field (uidlist_ext_set()), so a big
 * mailbox is read in full at most once and later logins open no file.
 *
 * UIDLs: a record's P extension field (a UIDL kept from the server a
 * mailbox was migrated from, as Dovecot writes it) wins; otherwise the
 * configured format over UID and UIDVALIDITY. */
#include "pop3d/pop3-mailbox.h"
#include "store/maildir.h"
#include "store/store-lock.h"
#include "store/store-read.h"
#include "store/uidlist-ext.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct open_ctx {
	struct pop3_mailbox *mbox;
	const struct pop3_mailbox_settings *set;
	struct uidlist *ul;
	struct uidlist_ext_update *updates;
	char (*update_values)[24];
	size_t nupdates;
	struct buf uidls;
	size_t *uidl_offsets;
};

/* ",<key>=<digits>" in the base part of a maildir file name. */
static bool name_field(const char *name, char key, uint64_t *value_r)
{
	size_t base = maildir_base_len(name);

	for (size_t i = 0; i + 3 <= base; i++) {
		if (name[i] != ',' || name[i + 1] != key || name[i + 2] != '=')
			continue;
		uint64_t v = 0;
		size_t j = i + 3, digits = 0;
		for (; j < base && name[j] >= '0' && name[j] <= '9' && digits < 19; j++, digits++)
			v = v * 10 + (uint64_t)(name[j] - '0');
		if (digits > 0 && (j == base || name[j] == ','))
			*value_r = v;
		return digits > 0 && (j == base || name[j] == ',');
	}
	return false;
}

static bool ext_number(const struct uidlist_rec *rec, char key, uint64_t *value_r)
{
	const char *v;
	size_t len;
	uint64_t n = 0;

	if (!uidlist_ext_get(rec, key, &v, &len) || len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*value_r = n;
	return true;
}

static char *message_path(const struct pop3_mailbox *mbox, const char *filename, bool in_new)
{
	return mf_asprintf("%s/%s/%s", mbox->mbox, in_new ? "new" : "cur", filename);
}

struct find_ctx {
	const char *want;
	size_t want_len;
	char *found;
};

static int find_cb(void *ctx, const char *name)
{
	struct find_ctx *f = ctx;

	if (maildir_base_len(name) == f->want_len && memcmp(name, f->want, f->want_len) == 0) {
		f->found = mf_strdup(name);
		return 1;
	}
	return 0;
}

/* The message's file was renamed (flags, new/ -> cur/): look it up by base
 * name. 0 found (msg updated), -1 ENOENT when it is gone. */
static int relocate(struct pop3_mailbox *mbox, struct pop3_message *msg)
{
	static const char *const dirs[] = { "cur", "new" };
	struct find_ctx f = { .want = msg->filename, .want_len = maildir_base_len(msg->filename) };

	for (size_t i = 0; i < MF_N_ELEMENTS(dirs) && f.found == NULL; i++) {
		char *dir = mf_asprintf("%s/%s", mbox->mbox, dirs[i]);
		int ret = io_readdir(store_io(mbox->store), dir, find_cb, &f);
		free(dir);
		if (ret < 0)
			return -1;
		if (f.found != NULL) {
			free(msg->filename);
			msg->filename = f.found;
			msg->in_new = i == 1;
		}
	}
	if (f.found == NULL) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

int pop3_mailbox_read(struct pop3_mailbox *mbox, unsigned idx, size_t max_size,
		      unsigned char **data_r, size_t *len_r)
{
	struct pop3_message *msg = &mbox->msgs[idx];

	for (int attempt = 0; attempt < 2; attempt++) {
		char *path = message_path(mbox, msg->filename, msg->in_new);
		int ret = store_read_message_fast(mbox->store, path, max_size, data_r, len_r);
		int err = errno;
		free(path);
		if (ret == 0)
			return 0;
		if ((err != ENOENT && err != ESTALE) || attempt > 0 || relocate(mbox, msg) < 0) {
			errno = err == ESTALE ? ENOENT : err;
			return -1;
		}
	}
	return -1;
}

/* The wire size of rec; reads the file when nothing cached says it.
 * 1 = size known, 0 = the file is gone, -1 = error. */
static int message_size(struct open_ctx *o, const struct uidlist_rec *rec, uint64_t *size_r)
{
	struct pop3_message tmp = { .filename = mf_strdup(rec->filename), .in_new = rec->in_new };
	unsigned char *data;
	size_t len;

	if (name_field(rec->filename, 'W', size_r) || ext_number(rec, 'W', size_r)) {
		free(tmp.filename);
		return 1;
	}
	struct pop3_mailbox fake = { .store = o->mbox->store, .mbox = o->mbox->mbox, .msgs = &tmp };
	int ret = pop3_mailbox_read(&fake, 0, o->set->message_size_max, &data, &len);
	free(tmp.filename);
	if (ret < 0)
		return errno == ENOENT ? 0 : -1;
	*size_r = pop3_crlf_size(data, len);
	free(data);
	o->mbox->sizes_computed++;
	snprintf(o->update_values[o->nupdates], sizeof(o->update_values[0]), "%llu",
		 (unsigned long long)*size_r);
	o->updates[o->nupdates] = (struct uidlist_ext_update){
		.uid = rec->uid, .key = 'W', .value = o->update_values[o->nupdates],
	};
	o->nupdates++;
	return 1;
}

static void add_uidl(struct open_ctx *o, const struct uidlist_rec *rec, unsigned idx)
{
	char uidl[POP3_UIDL_MAX + 1];
	const char *kept;
	size_t len;

	if (uidlist_ext_get(rec, 'P', &kept, &len) && len <= POP3_UIDL_MAX) {
		memcpy(uidl, kept, len);
		uidl[len] = '\0';
	} else {
		struct pop3_uidl_vars vars = {
			.uid = rec->uid, .uid_validity = o->mbox->uid_validity,
			.basename = rec->filename, .basename_len = maildir_base_len(rec->filename),
		};
		len = pop3_uidl_expand(o->set->uidl_format, &vars, uidl);
	}
	o->uidl_offsets[idx] = o->uidls.len;
	buf_append(&o->uidls, uidl, len + 1);
}

static int build_list(struct open_ctx *o, const char **error_r)
{
	struct pop3_mailbox *mbox = o->mbox;
	size_t n = o->ul->count;

	mbox->uid_validity = o->ul->uid_validity;
	mbox->msgs = mf_calloc(n + 1, sizeof(*mbox->msgs));
	o->updates = mf_calloc(n + 1, sizeof(*o->updates));
	o->update_values = mf_calloc(n + 1, sizeof(*o->update_values));
	o->uidl_offsets = mf_calloc(n + 1, sizeof(*o->uidl_offsets));
	buf_init(&o->uidls, 0);
	for (size_t i = 0; i < n; i++) {
		struct uidlist_rec *rec = &o->ul->recs[i];
		uint64_t size;
		int ret = message_size(o, rec, &size);
		if (ret < 0) {
			*error_r = "cannot read a message to learn its size";
			return -1;
		}
		if (ret == 0)
			continue;   /* removed since the sync: not part of this maildrop */
		struct pop3_message *msg = &mbox->msgs[mbox->count];
		*msg = (struct pop3_message){ .uid = rec->uid, .size = size, .in_new = rec->in_new };
		add_uidl(o, rec, mbox->count);
		/* the record's name moves to the message (uidlist_free() skips NULL) */
		msg->filename = rec->filename;
		rec->filename = NULL;
		mbox->count++;
	}
	mbox->uidl_storage = (char *)o->uidls.data;
	o->uidls.data = NULL;
	for (unsigned i = 0; i < mbox->count; i++)
		mbox->msgs[i].uidl = mbox->uidl_storage + o->uidl_offsets[i];
	return 0;
}

static void open_ctx_free(struct open_ctx *o)
{
	uidlist_free(&o->ul);
	free(o->updates);
	free(o->update_values);
	free(o->uidl_offsets);
	buf_free(&o->uidls);
}

static int64_t mtime_ns(const struct io_stat *st)
{
	return st->mtime_sec * 1000000000LL + st->mtime_nsec;
}

/* The uidlist is known to be current when neither new/ nor cur/ changed
 * since a full sync began (POP3_SYNC_MARK's mtime; a second of margin for
 * coarse timestamps): then it is read without listing the directories.
 * All times compared are the NAS's. 1 = loaded, 0 = a full sync is needed. */
static int load_if_current(struct pop3_mailbox *mbox, struct uidlist **ul_r)
{
	struct mf_io *io = store_io(mbox->store);
	char *mark = mf_asprintf("%s/%s", mbox->mbox, POP3_SYNC_MARK);
	char *new_dir = mf_asprintf("%s/new", mbox->mbox), *cur_dir = mf_asprintf("%s/cur", mbox->mbox);
	char *path = mf_asprintf("%s/%s", mbox->mbox, UIDLIST_FILE_NAME);
	unsigned char *data = NULL;
	struct io_stat st_mark, st_new, st_cur;
	size_t len;
	unsigned line;
	const char *error;
	int ret = 0;

	if (io_stat(io, mark, &st_mark) == 0 && io_stat(io, new_dir, &st_new) == 0 &&
	    io_stat(io, cur_dir, &st_cur) == 0 &&
	    MF_MAX(mtime_ns(&st_new), mtime_ns(&st_cur)) < mtime_ns(&st_mark) - 1000000000LL &&
	    store_read_file_sized(io, path, UIDLIST_MAX_SIZE, &data, &len) == 0 &&
	    uidlist_parse((const char *)data, len, ul_r, &line, &error) == 0) {
		/* maildir: names in new/ carry no ":2,..." info part */
		for (size_t i = 0; i < (*ul_r)->count; i++)
			(*ul_r)->recs[i].in_new = strchr((*ul_r)->recs[i].filename, ':') == NULL;
		ret = 1;
	}
	free(data);
	free(path);
	free(mark);
	free(new_dir);
	free(cur_dir);
	return ret;
}

/* uidlist_sync(), remembering when its listing began (POP3_SYNC_MARK: a
 * file created before the sync and renamed into place after it). */
static int full_sync(struct pop3_mailbox *mbox, struct uidlist **ul_r, const char **error_r)
{
	struct mf_io *io = store_io(mbox->store);
	char *tmp = mf_asprintf("%s/tmp/.%s.%d.%llu", mbox->mbox, POP3_SYNC_MARK, (int)getpid(),
				(unsigned long long)mf_now_us());
	char *mark = mf_asprintf("%s/%s", mbox->mbox, POP3_SYNC_MARK);
	struct io_file *file;
	bool have_tmp = io_open(io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file) == 0;

	if (have_tmp)
		have_tmp = io_close(&file) == 0;
	int ret = uidlist_sync(mbox->store, mbox->mbox, ul_r, error_r);
	if (have_tmp && (ret < 0 || io_rename(io, tmp, mark) < 0))
		io_unlink(io, tmp);
	free(tmp);
	free(mark);
	return ret;
}

static int lock_mailbox(struct pop3_mailbox *mbox, unsigned timeout, bool *in_use_r,
			const char **error_r)
{
	char *path = mf_asprintf("%s/%s", mbox->mbox, POP3_LOCK_FILE_NAME);
	int64_t age = 0;
	int ret = store_lock_try(mbox->store, path, timeout, &mbox->lock, &age);

	*in_use_r = ret < 0 && errno == EEXIST;
	if (ret < 0 && !*in_use_r)
		*error_r = "cannot create the POP3 lock";
	if (*in_use_r)
		log_info("pop3: %s is locked by another session (lock %lld s old)", path, (long long)age);
	free(path);
	return ret;
}

enum pop3_open_result pop3_mailbox_open(struct store *store, const char *domain, const char *user,
					const struct pop3_mailbox_settings *set,
					struct pop3_mailbox **mbox_r, const char **error_r)
{
	struct pop3_mailbox *mbox = mf_calloc(1, sizeof(*mbox));
	struct open_ctx o = { .mbox = mbox, .set = set };
	bool in_use = false;
	const char *error;

	*mbox_r = NULL;
	mbox->store = store;
	mbox->mbox = maildir_mailbox_path(domain, user, NULL);
	if (mbox->mbox == NULL || store_folder_create(store, domain, user, NULL) < 0) {
		*error_r = mbox->mbox == NULL ? "invalid user name" : "cannot create the Maildir";
		pop3_mailbox_close(&mbox);
		return POP3_OPEN_FAILED;
	}
	if (lock_mailbox(mbox, set->lock_timeout_secs, &in_use, error_r) < 0) {
		pop3_mailbox_close(&mbox);
		return in_use ? POP3_OPEN_IN_USE : POP3_OPEN_FAILED;
	}
	if ((load_if_current(mbox, &o.ul) == 0 && full_sync(mbox, &o.ul, error_r) < 0) ||
	    build_list(&o, error_r) < 0) {
		open_ctx_free(&o);
		pop3_mailbox_close(&mbox);
		return POP3_OPEN_FAILED;
	}
	/* a cache: failing to write it costs only time at the next login */
	if (uidlist_ext_set(store, mbox->mbox, o.updates, o.nupdates, &error) < 0)
		log_warn("pop3: %s: caching message sizes: %s", mbox->mbox, error);
	open_ctx_free(&o);
	*mbox_r = mbox;
	return POP3_OPEN_OK;
}

int pop3_mailbox_refresh_lock(struct pop3_mailbox *mbox)
{
	if (mbox->lock == NULL) {
		errno = EPERM;
		return -1;
	}
	return store_lock_refresh(mbox->lock);
}

static int remove_message(struct pop3_mailbox *mbox, struct pop3_message *msg)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		char *path = message_path(mbox, msg->filename, msg->in_new);
		int ret = io_unlink(store_io(mbox->store), path);
		int err = errno;
		free(path);
		if (ret == 0)
			return 1;
		if ((err != ENOENT && err != ESTALE) || attempt > 0)
			return err == ENOENT ? 0 : -1;
		if (relocate(mbox, msg) < 0)
			return errno == ENOENT ? 0 : -1;
	}
	return 0;
}

int pop3_mailbox_commit(struct pop3_mailbox *mbox, unsigned *removed_r, const char **error_r)
{
	int ret = 0;

	*removed_r = 0;
	if (mbox->lock == NULL || store_lock_is_ours(mbox->lock) != 1) {
		*error_r = "the mailbox lock was lost; no message was deleted";
		store_lock_forget(&mbox->lock);
		return -1;
	}
	for (unsigned i = 0; i < mbox->count; i++) {
		if (!mbox->msgs[i].deleted)
			continue;
		int r = remove_message(mbox, &mbox->msgs[i]);
		if (r < 0) {
			*error_r = "some deleted messages were not removed";
			ret = -1;
		} else {
			*removed_r += (unsigned)r;
		}
	}
	if (*removed_r > 0 && uidlist_sync(mbox->store, mbox->mbox, NULL, error_r) < 0) {
		/* the files are gone; the next sync will drop their records */
		log_warn("pop3: %s: uidlist sync after deleting: %s", mbox->mbox, *error_r);
	}
	store_lock_release(&mbox->lock);
	return ret;
}

void pop3_mailbox_close(struct pop3_mailbox **mboxp)
{
	struct pop3_mailbox *mbox = *mboxp;

	if (mbox == NULL)
		return;
	*mboxp = NULL;
	store_lock_release(&mbox->lock);
	for (unsigned i = 0; i < mbox->count; i++)
		free(mbox->msgs[i].filename);
	free(mbox->msgs);
	free(mbox->uidl_storage);
	free(mbox->mbox);
	free(mbox);
}
