/* mailbox.c: a maildir mailbox as a session's view (see mailbox.h): sync from
 * the uidlist, flags in file names, keywords file, reads and expunge.
 * Appends, copies and STATUS are in mailbox-save.c, folders in
 * mailbox-list.c. */
#include "store/mailbox-private.h"
#include "store/mailbox-index.h"
#include "store/mailbox-cache.h"
#include "store/mailbox-snapshot.h"
#include "store/maildir.h"
#include "store/store-lock.h"
#include "store/store-private.h"
#include "store/uidlist-ext.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	char letter;
	uint32_t flag;
} flag_letters[] = {
	{ 'D', MAILBOX_FLAG_DRAFT }, { 'F', MAILBOX_FLAG_FLAGGED },
	{ 'P', MAILBOX_FLAG_FORWARDED }, { 'R', MAILBOX_FLAG_ANSWERED },
	{ 'S', MAILBOX_FLAG_SEEN }, { 'T', MAILBOX_FLAG_DELETED },
};

void mailbox_name_flags(const char *filename, uint32_t *flags_r, uint32_t *keywords_r)
{
	const char *info = strstr(filename, ":2,");

	*flags_r = 0;
	*keywords_r = 0;
	if (info == NULL)
		return;
	for (const char *p = info + 3; *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'z') {
			*keywords_r |= 1u << (*p - 'a');
			continue;
		}
		for (size_t i = 0; i < MF_N_ELEMENTS(flag_letters); i++) {
			if (flag_letters[i].letter == *p)
				*flags_r |= flag_letters[i].flag;
		}
	}
}

char *mailbox_name_with_flags(const char *filename, uint32_t flags, uint32_t keywords)
{
	size_t base = maildir_base_len(filename);
	char info[3 + MF_N_ELEMENTS(flag_letters) + MAILBOX_KEYWORDS_MAX + 1];
	size_t n = 0;

	memcpy(info, ":2,", 3);
	n = 3;
	for (size_t i = 0; i < MF_N_ELEMENTS(flag_letters); i++) {
		if ((flags & flag_letters[i].flag) != 0)
			info[n++] = flag_letters[i].letter;
	}
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if ((keywords & (1u << i)) != 0)
			info[n++] = (char)('a' + i);
	}
	info[n] = '\0';
	return mf_asprintf("%.*s%s", (int)base, filename, info);
}

char *mailbox_msg_path(const struct mailbox *box, const struct mailbox_msg *m)
{
	return mf_asprintf("%s/%s/%s", box->path, m->in_new ? "new" : "cur", m->filename);
}

/* ---- keywords file: "<index> <name>" lines ---- */

void mailbox_keywords_clear(struct mailbox *box)
{
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++)
		mf_free(&box->keywords[i]);
}

static void keywords_parse(struct mailbox *box, char *data)
{
	char *save = NULL;

	for (char *line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *end;
		unsigned long idx = strtoul(line, &end, 10);
		if (end == line || *end != ' ' || idx >= MAILBOX_KEYWORDS_MAX || end[1] == '\0')
			continue;
		if (strlen(end + 1) > MAILBOX_KEYWORD_LEN_MAX || strchr(end + 1, ' ') != NULL)
			continue;
		mf_free(&box->keywords[idx]);
		box->keywords[idx] = mf_strdup(end + 1);
	}
}

int mailbox_keywords_load(struct mailbox *box)
{
	char *path = mf_asprintf("%s/%s", box->path, MAILBOX_KEYWORDS_FILE);
	char *data;
	size_t len;
	int ret = io_read_file(store_io(box->store), path, 64 * 1024, &data, &len);

	free(path);
	mailbox_keywords_clear(box);
	if (ret < 0 && errno == ENOENT) {
		/* an adopted Dovecot maildir keeps its keyword letters */
		path = mf_asprintf("%s/dovecot-keywords", box->path);
		ret = io_read_file(store_io(box->store), path, 64 * 1024, &data, &len);
		free(path);
	}
	if (ret < 0)
		return errno == ENOENT ? 0 : -1;
	keywords_parse(box, data);
	free(data);
	return 0;
}

static int keywords_write(struct mailbox *box)
{
	struct mf_io *io = store_io(box->store);
	char *tmp = mf_asprintf("%s/%s.tmp", box->path, MAILBOX_KEYWORDS_FILE);
	char *path = mf_asprintf("%s/%s", box->path, MAILBOX_KEYWORDS_FILE);
	struct buf out;
	struct io_file *file;
	int ret;

	buf_init(&out, 0);
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] != NULL)
			buf_printf(&out, "%u %s\n", i, box->keywords[i]);
	}
	ret = io_open(io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file);
	if (ret == 0) {
		ret = io_write_all(file, out.data != NULL ? out.data : (const unsigned char *)"", out.len);
		if (ret == 0)
			ret = io_fsync(file);
		if (io_close(&file) < 0)
			ret = -1;
	}
	if (ret == 0)
		ret = io_rename(io, tmp, path);
	buf_free(&out);
	free(tmp);
	free(path);
	return ret;
}

static int keyword_find(const struct mailbox *box, const char *name)
{
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] != NULL && strcasecmp(box->keywords[i], name) == 0)
			return (int)i;
	}
	return -1;
}

static int keyword_add_locked(struct mailbox *box, const char *name)
{
	int idx;

	if (mailbox_keywords_load(box) < 0)
		return -1;
	idx = keyword_find(box, name);
	if (idx >= 0)
		return idx;
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] == NULL) {
			box->keywords[i] = mf_strdup(name);
			return keywords_write(box) < 0 ? -1 : (int)i;
		}
	}
	return -1;
}

int mailbox_keyword_index(struct mailbox *box, const char *name, bool create)
{
	struct store_lock *lock;
	int idx = keyword_find(box, name);

	if (idx >= 0 || strlen(name) > MAILBOX_KEYWORD_LEN_MAX)
		return idx;
	if (!create) {
		/* another session may have added it since this one looked */
		if (mailbox_keywords_load(box) < 0)
			return -1;
		return keyword_find(box, name);
	}
	if (mailbox_lock(box->store, box->path, &lock) < 0)
		return -1;
	idx = keyword_add_locked(box, name);
	store_lock_release(&lock);
	return idx;
}

int mailbox_lock(struct store *store, const char *path, struct store_lock **lock_r)
{
	char *lock_path = mf_asprintf("%s/%s", path, MAILBOX_LOCK_NAME);
	int ret = store_lock_take(store, lock_path, MAILBOX_LOCK_TIMEOUT_SECS,
				  MAILBOX_LOCK_WAIT_MS, lock_r);

	free(lock_path);
	return ret;
}

/* ---- sync ---- */

static const struct mailbox_msg *old_find(const struct mailbox_msg *msgs, unsigned count, uint32_t uid)
{
	unsigned lo = 0, hi = count;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (msgs[mid].uid == uid)
			return &msgs[mid];
		if (msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ",W=<n>" in the base name. */
static bool name_vsize(const char *name, uint64_t *vsize_r)
{
	size_t base = maildir_base_len(name);
	const char *p = name;

	while ((p = strstr(p, ",W=")) != NULL && (size_t)(p - name) < base) {
		char *end;
		unsigned long long v = strtoull(p + 3, &end, 10);
		if (end != p + 3) {
			*vsize_r = v;
			return true;
		}
		p += 3;
	}
	return false;
}

uint64_t mailbox_crlf_size(const unsigned char *data, size_t len)
{
	uint64_t size = len;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			size++;
	}
	return size;
}

/* Fills size, vsize and date of a message seen for the first time. *wrote_w
 * is set when vsize had to be computed from the file. */
static int msg_learn(struct mailbox *box, struct mailbox_msg *m, const struct uidlist_rec *rec,
		     bool *computed_r)
{
	char *path = mailbox_msg_path(box, m);
	struct io_stat st;
	const char *v;
	size_t vlen;
	int ret = io_stat(store_io(box->store), path, &st);

	*computed_r = false;
	if (ret < 0) {
		free(path);
		return -1;
	}
	m->internal_date = st.mtime_sec;
	if (!maildir_name_size(m->filename, &m->size))
		m->size = st.size;
	if (name_vsize(m->filename, &m->vsize)) {
		free(path);
		return 0;
	}
	if (rec != NULL && uidlist_ext_get(rec, 'W', &v, &vlen) && vlen < 20) {
		m->vsize = strtoull(v, NULL, 10);
		free(path);
		return 0;
	}
	unsigned char *data;
	size_t len;
	ret = store_read_message(box->store, path, SIZE_MAX, &data, &len);
	free(path);
	if (ret < 0)
		return -1;
	m->size = len;
	m->vsize = mailbox_crlf_size(data, len);
	free(data);
	*computed_r = true;
	return 0;
}

/* msg_learn(), following a file that another session renamed (flags
 * changed) after the uidlist listed it. */
static int msg_learn_follow(struct mailbox *box, struct mailbox_msg *m, const struct uidlist_rec *rec,
			    bool *computed_r)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		if (msg_learn(box, m, rec, computed_r) == 0)
			return 0;
		if (errno != ENOENT || mailbox_msg_relocate(box, m) < 0)
			return -1;
		mailbox_name_flags(m->filename, &m->flags, &m->keywords);
	}
	return -1;
}

/* Moves a message from new/ to cur/ (read-write sessions, as maildir says). */
static void msg_move_to_cur(struct mailbox *box, struct mailbox_msg *m)
{
	char *from = mailbox_msg_path(box, m);
	char *name = strchr(m->filename, ':') != NULL ? mf_strdup(m->filename) :
		mailbox_name_with_flags(m->filename, 0, 0);
	char *to = mf_asprintf("%s/cur/%s", box->path, name);

	if (io_rename(store_io(box->store), from, to) == 0) {
		free(m->filename);
		m->filename = name;
		m->in_new = false;
		m->recent = true;
	} else {
		free(name);
	}
	free(from);
	free(to);
}

static void msgs_free(struct mailbox_msg **msgs, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		free((*msgs)[i].filename);
	mf_free(msgs);
}

struct sync_state {
	struct mailbox *box;
	struct mailbox_msg *msgs;
	unsigned count;
	struct uidlist_ext_update *updates;   /* W= sizes computed from files */
	char (*values)[24];
	size_t update_count, update_cap;
	unsigned moved;                /* files this sync moved new/ -> cur/ */
	/* the uidlist, index and keywords files as the lock left them, when
	 * new/ and cur/ are old enough for a settled snapshot */
	int64_t settle_limit_ns;
	struct snapshot_file_id files[SNAPSHOT_FILE_COUNT];
	bool files_ok;
};

static void note_computed(struct sync_state *st, uint32_t uid, uint64_t vsize)
{
	if (st->update_count == st->update_cap) {
		st->update_cap = st->update_cap < 64 ? 64 : st->update_cap * 2;
		st->updates = mf_realloc(st->updates, st->update_cap * sizeof(*st->updates));
		st->values = mf_realloc(st->values, st->update_cap * sizeof(*st->values));
	}
	snprintf(st->values[st->update_count], sizeof(st->values[0]), "%" PRIu64, vsize);
	st->updates[st->update_count] = (struct uidlist_ext_update){ .uid = uid, .key = 'W' };
	st->update_count++;
}

/* mailbox_index_learn_fn: size, vsize and date of a message new to the
 * index, from what this session already knew or from its file. */
static int learn_cb(void *ctx, const struct uidlist_rec *rec, struct mailbox_index_rec *rec_r)
{
	struct sync_state *st = ctx;
	struct mailbox *box = st->box;
	const struct mailbox_msg *old = old_find(box->msgs, box->count, rec->uid);
	struct mailbox_msg m = { .uid = rec->uid, .in_new = rec->in_new };
	bool computed;

	if (old != NULL) {
		rec_r->size = old->size;
		rec_r->vsize = old->vsize;
		rec_r->date = old->internal_date;
		return 0;
	}
	m.filename = mf_strdup(rec->filename);
	int ret = msg_learn_follow(box, &m, rec, &computed);
	int err = errno;
	free(m.filename);
	if (ret < 0) {
		errno = err;
		return -1;
	}
	rec_r->size = m.size;
	rec_r->vsize = m.vsize;
	rec_r->date = m.internal_date;
	if (computed)
		note_computed(st, m.uid, m.vsize);
	return 0;
}

static const char *const snapshot_file_names[SNAPSHOT_FILE_COUNT] = {
	[SNAPSHOT_FILE_UIDLIST] = UIDLIST_FILE_NAME,
	[SNAPSHOT_FILE_INDEX] = MAILBOX_INDEX_FILE,
	[SNAPSHOT_FILE_KEYWORDS] = MAILBOX_KEYWORDS_FILE,
};

/* The identities of the files a snapshot depends on. */
static int files_identify(struct store *store, const char *mbox_path,
			  struct snapshot_file_id files[SNAPSHOT_FILE_COUNT])
{
	for (int i = 0; i < SNAPSHOT_FILE_COUNT; i++) {
		char *path = mf_asprintf("%s/%s", mbox_path, snapshot_file_names[i]);
		int ret = mailbox_snapshot_file_id(store, path, &files[i]);
		free(path);
		if (ret < 0)
			return -1;
	}
	return 0;
}

/* uidlist_locked_fn: the index follows the uidlist, under the lock. */
static int sync_hook(void *ctx, struct store *store, const char *mbox_path,
		     const struct uidlist *ul, const char **error_r)
{
	struct sync_state *st = ctx;

	if (mailbox_index_refresh(st->box->index) < 0) {
		*error_r = "cannot read the mailbox index";
		return -1;
	}
	if (mailbox_index_reconcile(st->box->index, ul, learn_cb, st, error_r) < 0)
		return -1;
	const struct mailbox *box = st->box;
	if (box->stamps_valid && box->stamps[0] < st->settle_limit_ns &&
	    box->stamps[1] < st->settle_limit_ns)
		st->files_ok = files_identify(store, mbox_path, st->files) == 0;
	return 0;
}

static void sync_one(struct mailbox *box, struct sync_state *st, const struct uidlist_rec *rec)
{
	const struct mailbox_msg *old = old_find(box->msgs, box->count, rec->uid);
	const struct mailbox_index_rec *irec = mailbox_index_lookup(box->index, rec->uid);
	struct mailbox_msg *m = &st->msgs[st->count];

	if (irec == NULL)
		return;   /* its file vanished while the index learned it */
	memset(m, 0, sizeof(*m));
	m->uid = rec->uid;
	m->filename = mf_strdup(rec->filename);
	m->in_new = rec->in_new;
	mailbox_name_flags(m->filename, &m->flags, &m->keywords);
	m->size = irec->size;
	m->vsize = irec->vsize;
	m->internal_date = irec->date;
	m->modseq = irec->modseq;
	m->cache_off = irec->cache_off;
	m->recent = old != NULL && old->recent;
	if (m->in_new && !box->read_only) {
		msg_move_to_cur(box, m);
		st->moved++;
	}
	st->count++;
}

/* mtimes of new/ and cur/ (ns), which every delivery, flag change and
 * expunge moves; the keywords file changes only with cur/ renames. */
static int dir_stamp(struct mailbox *box, int which, int64_t *stamp_r)
{
	static const char *const dirs[] = { "new", "cur" };
	char *path = mf_asprintf("%s/%s", box->path, dirs[which]);
	struct io_stat st;
	int ret = io_stat(store_io(box->store), path, &st);

	free(path);
	if (ret == 0)
		*stamp_r = st.mtime_sec * 1000000000LL + st.mtime_nsec;
	return ret;
}

static int dir_stamps(struct mailbox *box, int64_t stamps[2])
{
	return dir_stamp(box, 0, &stamps[0]) < 0 || dir_stamp(box, 1, &stamps[1]) < 0 ? -1 : 0;
}

int mailbox_changed(struct mailbox *box)
{
	int64_t stamps[2];

	if (dir_stamps(box, stamps) < 0)
		return -1;
	return stamps[0] != box->stamps[0] || stamps[1] != box->stamps[1] ||
		!box->stamps_valid ? 1 : 0;
}

static void sync_state_free(struct sync_state *st)
{
	free(st->updates);
	free(st->values);
}

/* Settled: nothing the snapshot depends on changed within the last
 * MAILBOX_SNAPSHOT_SETTLE_SECS before the sync began, by the NAS's clock. */
static bool sync_settled(const struct mailbox *box, const struct sync_state *st)
{
	int64_t limit = st->settle_limit_ns;

	if (!box->stamps_valid || !st->files_ok || st->moved > 0 ||
	    box->stamps[0] >= limit || box->stamps[1] >= limit)
		return false;
	for (int i = 0; i < SNAPSHOT_FILE_COUNT; i++) {
		if (st->files[i].exists && st->files[i].mtime_ns >= limit)
			return false;
	}
	return true;
}

/* The locked rescan: uidlist, listing, index; then publishes a snapshot. */
static int sync_full(struct mailbox *box, struct snapshot_entry *entry, const char **error_r)
{
	uint64_t started = mf_now_us();
	bool fine;
	int64_t nas_now_us = store_nas_now_us(box->store, &fine);
	struct sync_state st = {
		.box = box,
		.settle_limit_ns = (nas_now_us - (fine ? MAILBOX_SNAPSHOT_SETTLE_MS * 1000LL :
						  MAILBOX_SNAPSHOT_SETTLE_SECS * 1000000LL)) * 1000,
	};

	/* taken before the listing, so a change during it shows next time */
	box->stamps_valid = dir_stamps(box, box->stamps) == 0;

	struct uidlist *ul;
	const char *error;

	if (uidlist_sync_hook(box->store, box->path, sync_hook, &st, &ul, error_r) < 0) {
		sync_state_free(&st);
		return -1;
	}
	if (mailbox_keywords_load(box) < 0) {
		uidlist_free(&ul);
		sync_state_free(&st);
		*error_r = "cannot read the keywords file";
		return -1;
	}
	/* remember computed sizes so no session reads those files again */
	for (size_t i = 0; i < st.update_count; i++)
		st.updates[i].value = st.values[i];
	if (st.update_count > 0 &&
	    uidlist_ext_set(box->store, box->path, st.updates, st.update_count, &error) < 0)
		log_warn("mailbox %s: cannot record sizes: %s", box->path, error);
	st.msgs = mf_calloc(ul->count + 1, sizeof(*st.msgs));
	bool any_new = false;
	for (size_t i = 0; i < ul->count; i++) {
		sync_one(box, &st, &ul->recs[i]);
		if (st.count > 0 && st.msgs[st.count - 1].in_new)
			any_new = true;
	}
	msgs_free(&box->msgs, box->count);
	box->msgs = st.msgs;
	box->count = st.count;
	bool settled = sync_settled(box, &st);
	/* our own moves are no news (a change made meanwhile by others waits
	 * for the next full sync) */
	if (st.moved > 0)
		box->stamps_valid = dir_stamps(box, box->stamps) == 0;
	box->uid_validity = ul->uid_validity;
	box->uid_next = ul->next_uid;
	box->highest_modseq = box->index->highest_modseq;
	box->index_seen = box->index->offset;
	/* a read-only view with messages still in new/ is no one's snapshot */
	if (!any_new)
		mailbox_snapshot_publish(box->store, entry, box, started, settled, st.files);
	sync_state_free(&st);
	uidlist_free(&ul);
	return 0;
}

/* The view from a snapshot: no NAS access at all. */
static void sync_from_snapshot(struct mailbox *box, const struct mailbox_snapshot *snap)
{
	struct mailbox_msg *msgs = mf_calloc(snap->count + 1, sizeof(*msgs));

	for (unsigned i = 0; i < snap->count; i++) {
		const struct mailbox_msg *old = old_find(box->msgs, box->count, snap->msgs[i].uid);
		msgs[i] = snap->msgs[i];
		msgs[i].filename = mf_strdup(snap->msgs[i].filename);
		msgs[i].recent = old != NULL && old->recent;
	}
	msgs_free(&box->msgs, box->count);
	box->msgs = msgs;
	box->count = snap->count;
	mailbox_keywords_clear(box);
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (snap->keywords[i] != NULL)
			box->keywords[i] = mf_strdup(snap->keywords[i]);
	}
	mailbox_index_copy(box->index, snap->index);
	box->index_seen = box->index->offset;
	memcpy(box->stamps, snap->stamps, sizeof(box->stamps));
	box->stamps_valid = true;
	box->uid_validity = snap->uid_validity;
	box->uid_next = snap->uid_next;
	box->highest_modseq = box->index->highest_modseq;
}

/* A settled snapshot still describes the mailbox: five stats. */
static bool snapshot_current(struct mailbox *box, const struct mailbox_snapshot *snap)
{
	struct snapshot_file_id files[SNAPSHOT_FILE_COUNT];
	int64_t stamps[2];

	if (dir_stamps(box, stamps) < 0 || stamps[0] != snap->stamps[0] ||
	    stamps[1] != snap->stamps[1] || files_identify(box->store, box->path, files) < 0)
		return false;
	for (int i = 0; i < SNAPSHOT_FILE_COUNT; i++) {
		if (!mailbox_snapshot_file_id_equal(&files[i], &snap->files[i]))
			return false;
	}
	return true;
}

int mailbox_sync(struct mailbox *box, const char **error_r)
{
	uint64_t asked = mf_now_us();
	struct snapshot_entry *entry = mailbox_snapshot_enter(box->store, box->path);
	const struct mailbox_snapshot *snap = mailbox_snapshot_get(entry);
	int ret = 0;

	/* a sync that began after this one was asked for saw every change
	 * this one could see */
	if (snap != NULL && (snap->started_us >= asked ||
			     (snap->settled && snapshot_current(box, snap))))
		sync_from_snapshot(box, snap);
	else
		ret = sync_full(box, entry, error_r);
	mailbox_snapshot_leave(box->store, &entry);
	return ret;
}

void mailbox_drop_msgs(struct mailbox *box)
{
	msgs_free(&box->msgs, box->count);
	box->count = 0;
	mailbox_index_forget(box->index);
	mailbox_cache_release(box);
}

int mailbox_open(struct store *store, const char *domain, const char *user, const char *name,
		 bool read_only, struct mailbox **box_r, const char **error_r)
{
	const char *folder = maildir_folder_is_inbox(name) ? NULL : name;
	char *path = maildir_mailbox_path(domain, user, folder);
	struct io_stat st;
	struct mailbox *box;

	if (path == NULL) {
		*error_r = "invalid mailbox name";
		return -1;
	}
	if (folder == NULL && store_folder_create(store, domain, user, NULL) < 0) {
		free(path);
		*error_r = "cannot create the Maildir";
		return -1;
	}
	if (io_stat(store_io(store), path, &st) < 0) {
		int err = errno;
		free(path);
		*error_r = err == ENOENT ? "no such mailbox" : "cannot open the mailbox";
		errno = err;
		return -1;
	}
	box = mf_calloc(1, sizeof(*box));
	box->store = store;
	box->domain = mf_strdup(domain);
	box->user = mf_strdup(user);
	box->name = mf_strdup(folder == NULL ? "INBOX" : folder);
	box->path = path;
	box->read_only = read_only;
	box->index = mailbox_index_new(store, path);
	if (mailbox_sync(box, error_r) < 0) {
		int err = errno;
		mailbox_free(&box);
		errno = err;
		return -1;
	}
	*box_r = box;
	return 0;
}

void mailbox_free(struct mailbox **boxp)
{
	struct mailbox *box = *boxp;

	if (box == NULL)
		return;
	msgs_free(&box->msgs, box->count);
	mailbox_keywords_clear(box);
	mailbox_index_free(&box->index);
	mailbox_cache_release(box);
	free(box->domain);
	free(box->user);
	free(box->name);
	free(box->path);
	mf_free(boxp);
}

/* ---- finding a file renamed by someone else ---- */

struct relocate_ctx {
	const char *base;
	size_t base_len;
	char *found;
};

static int relocate_cb(void *ctx, const char *name)
{
	struct relocate_ctx *r = ctx;

	if (maildir_base_len(name) == r->base_len && strncmp(name, r->base, r->base_len) == 0) {
		r->found = mf_strdup(name);
		return 1;
	}
	return 0;
}

int mailbox_msg_relocate(struct mailbox *box, struct mailbox_msg *m)
{
	static const char *const dirs[] = { "cur", "new" };

	for (size_t i = 0; i < MF_N_ELEMENTS(dirs); i++) {
		struct relocate_ctx r = { .base = m->filename, .base_len = maildir_base_len(m->filename) };
		char *dir = mf_asprintf("%s/%s", box->path, dirs[i]);
		int ret = io_readdir(store_io(box->store), dir, relocate_cb, &r);
		free(dir);
		if (ret < 0)
			return -1;
		if (r.found != NULL) {
			free(m->filename);
			m->filename = r.found;
			m->in_new = i == 1;
			return 0;
		}
	}
	errno = ENOENT;
	return -1;
}

/* ---- flags ---- */

static int rename_flags(struct mailbox *box, struct mailbox_msg *m, uint32_t flags, uint32_t keywords)
{
	char *name = mailbox_name_with_flags(m->filename, flags, keywords);
	char *from = mailbox_msg_path(box, m);
	char *to = mf_asprintf("%s/cur/%s", box->path, name);
	int ret = 0;

	if (strcmp(from, to) != 0) {
		ret = io_rename(store_io(box->store), from, to);
	} else {
		/* nothing to rename, if the file is still where this view saw it */
		struct io_stat st;
		ret = io_stat(store_io(box->store), from, &st);
	}
	if (ret == 0) {
		free(m->filename);
		m->filename = name;
		/* taking it out of new/ makes this session the one that has it
		 * \Recent, as msg_move_to_cur() would */
		if (m->in_new)
			m->recent = true;
		m->in_new = false;
		m->flags = flags;
		m->keywords = keywords;
	} else {
		free(name);
	}
	free(from);
	free(to);
	return ret;
}

int mailbox_set_flags(struct mailbox *box, unsigned idx, uint32_t flags, uint32_t keywords,
		      const char **error_r)
{
	struct mailbox_msg *m = &box->msgs[idx];

	if (rename_flags(box, m, flags, keywords) == 0)
		return 0;
	/* another session changed its flags (renamed it) meanwhile */
	if (errno == ENOENT && mailbox_msg_relocate(box, m) == 0 &&
	    rename_flags(box, m, flags, keywords) == 0)
		return 0;
	*error_r = errno == ENOENT ? "message was expunged" : "cannot change flags";
	return -1;
}

int mailbox_change_flags(struct mailbox *box, unsigned idx, const struct mailbox_flag_change *ch,
			 const char **error_r)
{
	struct mailbox_msg *m = &box->msgs[idx];

	for (int attempt = 0; attempt < 3; attempt++) {
		uint32_t flags, kw;
		/* the file name is the truth: apply the change to what it says */
		mailbox_name_flags(m->filename, &flags, &kw);
		flags = (flags | ch->add) & ~ch->remove;
		kw = (kw | ch->kw_add) & ~ch->kw_remove;
		if (rename_flags(box, m, flags, kw) == 0) {
			m->flags = flags;
			m->keywords = kw;
			return 0;
		}
		if (errno != ENOENT || mailbox_msg_relocate(box, m) < 0)
			break;
	}
	*error_r = errno == ENOENT ? "message was expunged" : "cannot change flags";
	return -1;
}

/* *others_r: the index held records this view had not read (another
 * session's change, or a rewrite). */
static int store_locked(struct mailbox *box, const unsigned *idxs, unsigned count,
			const struct mailbox_flag_change *ch, uint64_t unchanged_since,
			bool *modified_r, bool *expunged_r, bool *others_r, const char **error_r)
{
	struct mailbox_index_rec *changes = mf_calloc(count + 1, sizeof(*changes));
	unsigned *changed_idx = mf_calloc(count + 1, sizeof(*changed_idx));
	size_t n = 0;
	int ret = 0;
	uint64_t offset = box->index->offset, generation = box->index->generation;

	if (mailbox_index_refresh(box->index) < 0) {
		*error_r = "cannot read the mailbox index";
		ret = -1;
	}
	*others_r = box->index->offset != offset || box->index->generation != generation;
	for (unsigned i = 0; i < count && ret == 0; i++) {
		struct mailbox_msg *m = &box->msgs[idxs[i]];
		const struct mailbox_index_rec *irec = mailbox_index_lookup(box->index, m->uid);
		if (irec == NULL) {
			expunged_r[i] = true;
			continue;
		}
		if (irec->modseq > m->modseq) {
			/* changed by another session since this one looked */
			m->flags = irec->flags;
			m->keywords = irec->keywords;
			m->modseq = irec->modseq;
		}
		if (unchanged_since != 0 && irec->modseq > unchanged_since) {
			modified_r[i] = true;
			continue;
		}
		if (mailbox_change_flags(box, idxs[i], ch, error_r) < 0) {
			if (errno != ENOENT)
				ret = -1;
			expunged_r[i] = true;
			continue;
		}
		changes[n] = (struct mailbox_index_rec){ .uid = m->uid, .flags = m->flags, .keywords = m->keywords };
		changed_idx[n++] = idxs[i];
	}
	if (ret == 0 && mailbox_index_set_flags(box->index, changes, n, error_r) < 0)
		ret = -1;
	for (size_t j = 0; j < n && ret == 0; j++)
		box->msgs[changed_idx[j]].modseq = changes[j].modseq;
	box->highest_modseq = box->index->highest_modseq;
	free(changes);
	free(changed_idx);
	return ret;
}

int mailbox_store_flags(struct mailbox *box, const unsigned *idxs, unsigned count,
			const struct mailbox_flag_change *ch, uint64_t unchanged_since,
			bool *modified_r, bool *expunged_r, const char **error_r)
{
	struct store_lock *lock;
	int ret;

	if (mailbox_lock(box->store, box->path, &lock) < 0) {
		*error_r = "cannot lock the mailbox";
		return -1;
	}
	/* nothing changed in cur/ since the view's sync: no index record by
	 * anyone else, its mtime as then (a change in new/ still shows by
	 * new/'s stamp, which stays) */
	int64_t cur;
	bool quiet = box->stamps_valid && box->index->offset == box->index_seen &&
		dir_stamp(box, 1, &cur) == 0 && cur == box->stamps[1];
	bool others;
	ret = store_locked(box, idxs, count, ch, unchanged_since, modified_r, expunged_r, &others,
			   error_r);
	/* then the renames just made are no news: the view is up to date with
	 * cur/ as it is now (a change by others within the NAS's timestamp
	 * granularity of this stat waits for the next change or NOOP, as for
	 * mailbox_changed()) */
	if (ret == 0 && quiet && !others && dir_stamp(box, 1, &cur) == 0) {
		box->stamps[1] = cur;
		box->index_seen = box->index->offset;
	}
	store_lock_release(&lock);
	return ret;
}

int mailbox_read(struct mailbox *box, unsigned idx, size_t max_size, unsigned char **data_r,
		 size_t *len_r, const char **error_r)
{
	struct mailbox_msg *m = &box->msgs[idx];

	for (int attempt = 0; attempt < 2; attempt++) {
		char *path = mailbox_msg_path(box, m);
		int ret = store_read_message(box->store, path, max_size, data_r, len_r);
		free(path);
		if (ret == 0)
			return 0;
		if (errno != ENOENT || attempt == 1 || mailbox_msg_relocate(box, m) < 0)
			break;
	}
	*error_r = errno == ENOENT ? "message was expunged" : "cannot read the message";
	return -1;
}

/* ---- expunge ---- */

/* Removes m's file (following a rename by another session); with
 * only_deleted, only while its current name still says \Deleted (another
 * session may have taken the flag off: that message stays). */
static int expunge_one(struct mailbox *box, struct mailbox_msg *m, bool only_deleted)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		uint32_t flags, kw;
		mailbox_name_flags(m->filename, &flags, &kw);
		if (!only_deleted || (flags & MAILBOX_FLAG_DELETED) != 0) {
			char *path = mailbox_msg_path(box, m);
			int ret = io_unlink(store_io(box->store), path);
			free(path);
			if (ret == 0)
				return 0;
			if (errno != ENOENT)
				return -1;
		}
		/* gone or renamed: where is it now? */
		if (mailbox_msg_relocate(box, m) < 0)
			return errno == ENOENT ? 0 : -1;
		mailbox_name_flags(m->filename, &flags, &kw);
		if (only_deleted && (flags & MAILBOX_FLAG_DELETED) == 0)
			return 0;
	}
	return 0;
}

int mailbox_expunge(struct mailbox *box, const unsigned *idxs, unsigned count, bool only_deleted,
		    const char **error_r)
{
	struct store_lock *lock;
	int ret = 0;

	if (count == 0)
		return mailbox_sync(box, error_r);
	if (mailbox_lock(box->store, box->path, &lock) < 0) {
		*error_r = "cannot lock the mailbox";
		return -1;
	}
	for (unsigned i = 0; i < count && ret == 0; i++)
		ret = expunge_one(box, &box->msgs[idxs[i]], only_deleted);
	store_lock_release(&lock);
	if (ret < 0) {
		*error_r = "cannot remove a message file";
		return -1;
	}
	return mailbox_sync(box, error_r);
}
