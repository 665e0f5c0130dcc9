/* uidlist-sync.c: assigns UIDs under the per-mailbox lock on the NAS
 * (store-lock.h): lock -> fresh read -> list new/ and cur/ -> write a temp
 * file -> rename it over -> unlock. A lock is stale when its mtime is older
 * than lock_timeout_secs by the NAS's clock, never by the local clock. */
#include "store/store-private.h"
#include "store/uidlist.h"
#include "store/maildir.h"
#include "store/store-lock.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define UIDLIST_LOCK_NAME "mailfleet-uidlist.lock"
#define UIDLIST_LISTING_MAX 10000000
#define UIDLIST_LISTINGS_MAX 4     /* listings per sync when files seem gone */

struct sync_ctx {
	struct store *store;
	const char *mbox;
	char *lock_path;
	struct store_lock *lock;
	struct uidlist *ul;
	struct listed *files;
	size_t nfiles, cap;
	uint32_t *slots;      /* hash of files by base name: index + 1, 0 free */
	size_t slot_mask;
	bool *found;          /* per record of ul: matched a listed file */
	bool changed;
	const char *error;
	uidlist_locked_fn *hook;   /* run under the lock after the write */
	void *hook_ctx;
};

struct listed {
	char *name;
	size_t base_len;      /* maildir_base_len(name), computed once */
	bool in_new;
	bool matched;
};

static int lock_take(struct sync_ctx *s)
{
	unsigned timeout = s->store->set.lock_timeout_secs;

	if (store_lock_take(s->store, s->lock_path, timeout, (timeout + 10) * 1000, &s->lock) == 0)
		return 0;
	s->error = errno == EAGAIN ? "timed out waiting for the uidlist lock" :
		"cannot take the uidlist lock";
	return -1;
}

static struct uidlist *uidlist_new_empty(struct store *store)
{
	struct uidlist *ul = mf_calloc(1, sizeof(*ul));
	unsigned char g[16];

	ul->uid_validity = (uint32_t)store_nas_now(store);
	ul->next_uid = 1;
	if (getrandom(g, sizeof(g), 0) != (ssize_t)sizeof(g)) {
		uint64_t seed = mf_now_us() ^ (uint64_t)getpid() << 40;
		for (size_t i = 0; i < sizeof(g); i++)
			g[i] = (unsigned char)(seed >> (8 * (i % 8)) ^ i);
	}
	for (size_t i = 0; i < sizeof(g); i++) {
		static const char hex[] = "0123456789abcdef";
		ul->guid[i * 2] = hex[g[i] >> 4];
		ul->guid[i * 2 + 1] = hex[g[i] & 15];
	}
	return ul;
}

/* Reads name in the mailbox; 0 = parsed, 1 = missing, -1 = error. */
static int read_uidlist(struct sync_ctx *s, const char *name)
{
	char *path = mf_asprintf("%s/%s", s->mbox, name), *data;
	size_t len;
	unsigned line;
	const char *error;

	int ret = io_read_file(s->store->io, path, UIDLIST_MAX_SIZE, &data, &len);
	if (ret < 0) {
		free(path);
		if (errno == ENOENT)
			return 1;
		s->error = "cannot read the uidlist";
		return -1;
	}
	ret = uidlist_parse(data, len, &s->ul, &line, &error);
	if (ret < 0) {
		log_error("store: %s line %u: %s", path, line, error);
		s->error = "the uidlist is corrupt";
		errno = EIO;
	}
	free(data);
	free(path);
	return ret;
}

static int load_uidlist(struct sync_ctx *s)
{
	int ret = read_uidlist(s, UIDLIST_FILE_NAME);

	if (ret == 1) {
		/* first sync: adopt a Dovecot maildir's UIDs */
		ret = read_uidlist(s, UIDLIST_DOVECOT_FILE_NAME);
		if (ret == 0)
			s->changed = true;
	}
	if (ret == 1) {
		s->ul = uidlist_new_empty(s->store);
		s->changed = true;
		ret = 0;
	}
	return ret;
}

struct list_cb_ctx {
	struct sync_ctx *s;
	bool in_new;
};

static int list_cb(void *ctx, const char *name)
{
	struct list_cb_ctx *l = ctx;
	struct sync_ctx *s = l->s;

	if (name[0] == '.' || strlen(name) > MAILDIR_NAME_MAX || s->nfiles >= UIDLIST_LISTING_MAX)
		return 0;
	if (s->nfiles == s->cap) {
		s->cap = s->cap * 2 + 64;
		s->files = mf_realloc(s->files, s->cap * sizeof(*s->files));
	}
	s->files[s->nfiles++] = (struct listed){ .name = mf_strdup(name), .in_new = l->in_new,
						 .base_len = maildir_base_len(name) };
	return 0;
}

/* new/ first, then cur/: a message moved from new/ to cur/ meanwhile is seen
 * in one of them. */
static int list_mailbox(struct sync_ctx *s)
{
	static const char *const dirs[] = { "new", "cur" };

	for (size_t i = 0; i < 2; i++) {
		char *path = mf_asprintf("%s/%s", s->mbox, dirs[i]);
		struct list_cb_ctx l = { .s = s, .in_new = i == 0 };
		int ret = io_readdir(s->store->io, path, list_cb, &l);
		free(path);
		if (ret < 0) {
			s->error = "cannot list the mailbox";
			return -1;
		}
	}
	return 0;
}

/* FNV-1a over the base name. */
static size_t base_hash(const char *name, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 32));
}

static bool base_equal(const struct listed *f, const char *name, size_t len)
{
	return f->base_len == len && memcmp(f->name, name, len) == 0;
}

/* The slot of base name (len bytes) in the hash: its file, or a free slot. */
static uint32_t *listed_slot(struct sync_ctx *s, const char *name, size_t len)
{
	for (size_t i = base_hash(name, len) & s->slot_mask;; i = (i + 1) & s->slot_mask) {
		uint32_t *slot = &s->slots[i];
		if (*slot == 0 || base_equal(&s->files[*slot - 1], name, len))
			return slot;
	}
}

static struct listed *listed_find(struct sync_ctx *s, const char *filename)
{
	if (s->slots == NULL)
		return NULL;
	uint32_t *slot = listed_slot(s, filename, maildir_base_len(filename));
	return *slot == 0 ? NULL : &s->files[*slot - 1];
}

static void listed_free(struct sync_ctx *s)
{
	for (size_t i = 0; i < s->nfiles; i++)
		free(s->files[i].name);
	mf_free(&s->files);
	s->nfiles = s->cap = 0;
	mf_free(&s->slots);
	s->slot_mask = 0;
}

/* Matches records to files (by base name); returns how many records have
 * no file. */
static size_t match_records(struct sync_ctx *s)
{
	size_t missing = 0;

	s->found = mf_realloc(s->found, (s->ul->count + 1) * sizeof(*s->found));
	for (size_t i = 0; i < s->ul->count; i++) {
		struct uidlist_rec *r = &s->ul->recs[i];
		struct listed *f = listed_find(s, r->filename);
		s->found[i] = f != NULL && !f->matched;
		if (!s->found[i]) {
			missing++;
			continue;
		}
		f->matched = true;
		r->in_new = f->in_new;
		if (strcmp(r->filename, f->name) != 0) {
			/* a flag change (same base name): the result names the
			 * file as it is now, but the file on the store is not
			 * rewritten for it, since records are found by base name
			 * (a STORE would otherwise cost every next sync a
			 * rewrite and an fsync of the whole uidlist) */
			free(r->filename);
			r->filename = mf_strdup(f->name);
		}
	}
	return missing;
}

static void drop_missing(struct sync_ctx *s)
{
	size_t out = 0;

	for (size_t i = 0; i < s->ul->count; i++) {
		struct uidlist_rec *r = &s->ul->recs[i];
		if (!s->found[i]) {
			free(r->filename);
			free(r->ext);
			s->changed = true;
			continue;
		}
		s->ul->recs[out++] = *r;
	}
	s->ul->count = out;
}

/* Hashes the listing by base name, keeping one entry per base name: a
 * message moved from new/ to cur/ during the listing shows up in both (cur/
 * wins; the other entry's name is freed and set to NULL). */
static void listed_index(struct sync_ctx *s)
{
	size_t size = 64;

	while (size < 2 * s->nfiles)
		size *= 2;
	s->slots = mf_realloc(s->slots, size * sizeof(*s->slots));
	memset(s->slots, 0, size * sizeof(*s->slots));
	s->slot_mask = size - 1;
	for (size_t i = 0; i < s->nfiles; i++) {
		struct listed *f = &s->files[i];
		uint32_t *slot = listed_slot(s, f->name, f->base_len);
		if (*slot == 0) {
			*slot = (uint32_t)i + 1;
			continue;
		}
		struct listed *prev = &s->files[*slot - 1];
		if (prev->in_new && !f->in_new) {
			mf_free(&prev->name);
			*slot = (uint32_t)i + 1;
		} else {
			mf_free(&f->name);
		}
	}
}

static int listed_cmp_full(const void *a, const void *b)
{
	return strcmp(((const struct listed *)a)->name, ((const struct listed *)b)->name);
}

static void assign_new(struct sync_ctx *s)
{
	struct listed *fresh = mf_calloc(s->nfiles + 1, sizeof(*fresh));
	size_t n = 0;

	for (size_t i = 0; i < s->nfiles; i++) {
		if (s->files[i].name != NULL && !s->files[i].matched)
			fresh[n++] = s->files[i];
	}
	qsort(fresh, n, sizeof(*fresh), listed_cmp_full);
	for (size_t i = 0; i < n && s->ul->next_uid < UINT32_MAX - 1; i++) {
		struct uidlist *ul = s->ul;
		if (ul->count == ul->cap) {
			ul->cap = ul->cap * 2 + 16;
			ul->recs = mf_realloc(ul->recs, ul->cap * sizeof(*ul->recs));
		}
		ul->recs[ul->count++] = (struct uidlist_rec){
			.uid = ul->next_uid++, .filename = mf_strdup(fresh[i].name),
			.in_new = fresh[i].in_new,
		};
		s->changed = true;
	}
	free(fresh);
}

/* mtimes (ns) of new/ and cur/. */
static int dir_mtimes(struct sync_ctx *s, int64_t mtimes[2])
{
	static const char *const dirs[] = { "new", "cur" };

	for (size_t i = 0; i < 2; i++) {
		char *path = mf_asprintf("%s/%s", s->mbox, dirs[i]);
		struct io_stat st;
		int ret = io_stat(s->store->io, path, &st);
		free(path);
		if (ret < 0) {
			s->error = "cannot list the mailbox";
			return -1;
		}
		mtimes[i] = st.mtime_sec * 1000000000LL + st.mtime_nsec;
	}
	return 0;
}

/* Lists new/ and cur/ again; *stable_r: neither changed meanwhile, so the
 * listing saw every file that existed while it ran. */
static int relist(struct sync_ctx *s, bool *stable_r)
{
	int64_t before[2], after[2];

	listed_free(s);
	if (dir_mtimes(s, before) < 0 || list_mailbox(s) < 0 || dir_mtimes(s, after) < 0)
		return -1;
	listed_index(s);
	*stable_r = before[0] == after[0] && before[1] == after[1];
	return 0;
}

static int scan(struct sync_ctx *s)
{
	bool stable = false;

	if (list_mailbox(s) < 0)
		return -1;
	listed_index(s);
	/* A record without a file is an expunge, or a file that readdir
	 * skipped because another session renamed it (a flag change) while
	 * the listing ran: it had left its old place in the directory order
	 * and not yet reached the new one (ext4 and NFS listings both do
	 * that, and a file renamed again and again can be missed every time).
	 * Dropping it would give the message a new UID at the next sync. So
	 * records are dropped only after a listing during which neither
	 * directory changed; after UIDLIST_LISTINGS_MAX listings without one,
	 * they are kept for a later sync (an expunge then shows late, which
	 * is better than a message coming back under a new UID). */
	for (unsigned n = 1; match_records(s) > 0; n++) {
		if (stable) {
			drop_missing(s);
			break;
		}
		if (n == UIDLIST_LISTINGS_MAX) {
			log_info("store: %s changed during %u listings; records of files not "
				 "seen are kept until a quieter sync", s->mbox, n);
			break;
		}
		if (relist(s, &stable) < 0)
			return -1;
	}
	assign_new(s);
	return 0;
}

static int write_uidlist(struct sync_ctx *s)
{
	struct mf_io *io = s->store->io;
	char *tmp = mf_asprintf("%s/%s.tmp.%s.%d", s->mbox, UIDLIST_FILE_NAME, s->store->host, (int)getpid());
	char *path = mf_asprintf("%s/%s", s->mbox, UIDLIST_FILE_NAME);
	size_t len;
	char *data = uidlist_serialize(s->ul, &len);
	struct io_file *file;
	int ret = io_open(io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file);

	if (ret == 0) {
		ret = io_write_all(file, data, len);
		if (ret == 0 && s->store->set.fsync)
			ret = io_fsync(file);
		if (io_close(&file) < 0)
			ret = -1;
	}
	if (ret == 0)
		ret = io_rename(io, tmp, path);
	if (ret < 0) {
		int err = errno;
		io_unlink(io, tmp);
		errno = err;
		s->error = "cannot write the uidlist";
	}
	free(data);
	free(tmp);
	free(path);
	return ret;
}

static int sync_locked(struct sync_ctx *s)
{
	if (load_uidlist(s) < 0 || scan(s) < 0)
		return -1;
	if (s->changed && write_uidlist(s) < 0)
		return -1;
	if (s->hook != NULL && s->hook(s->hook_ctx, s->store, s->mbox, s->ul, &s->error) < 0)
		return -1;
	return 0;
}

static int uidlist_sync_once(struct store *store, const char *mbox_path, uidlist_locked_fn *hook,
			     void *hook_ctx, struct uidlist **ul_r, const char **error_r)
{
	struct sync_ctx s = { .store = store, .mbox = mbox_path, .hook = hook, .hook_ctx = hook_ctx };
	int ret, err;

	if (ul_r != NULL)
		*ul_r = NULL;
	s.lock_path = mf_asprintf("%s/%s", mbox_path, UIDLIST_LOCK_NAME);
	ret = lock_take(&s);
	if (ret == 0) {
		ret = sync_locked(&s);
		err = errno;
		store_lock_release(&s.lock);
		errno = err;
	}
	err = errno;
	listed_free(&s);
	free(s.found);
	if (ret == 0 && ul_r != NULL)
		*ul_r = s.ul;
	else
		uidlist_free(&s.ul);
	if (ret < 0)
		*error_r = s.error;
	free(s.lock_path);
	errno = err;
	return ret;
}

/* ESTALE (a handle the NAS no longer knows) gets one fresh try: every
 * lookup starts again from the mount root. */
int uidlist_sync_hook(struct store *store, const char *mbox_path, uidlist_locked_fn *hook,
		      void *hook_ctx, struct uidlist **ul_r, const char **error_r)
{
	int ret = uidlist_sync_once(store, mbox_path, hook, hook_ctx, ul_r, error_r);

	if (ret < 0 && errno == ESTALE)
		ret = uidlist_sync_once(store, mbox_path, hook, hook_ctx, ul_r, error_r);
	return ret;
}

int uidlist_sync(struct store *store, const char *mbox_path, struct uidlist **ul_r,
		 const char **error_r)
{
	return uidlist_sync_hook(store, mbox_path, NULL, NULL, ul_r, error_r);
}

int uidlist_sync_mailbox(struct store *store, const char *domain, const char *user,
			 const char *folder, struct uidlist **ul_r, const char **error_r)
{
	char *mbox = maildir_mailbox_path(domain, user, folder);

	if (mbox == NULL) {
		*error_r = "invalid domain, user or folder name";
		return -1;
	}
	int ret = uidlist_sync(store, mbox, ul_r, error_r);
	int err = errno;
	free(mbox);
	errno = err;
	return ret;
}
