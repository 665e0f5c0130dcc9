/* store.c: the store object, mailbox creation and lock-free maildir delivery
 * (tmp/ -> write -> fsync -> close -> rename into new/ -> new/ made durable),
 * with the NFS traps handled: a rename that reports ENOENT/EEXIST may have
 * succeeded (a retransmission), ESTALE is retried once. Also reads messages
 * back, undoing lz4 compression. */
#include "store/store-private.h"
#include "store/mailbox-snapshot.h"
#include "store/maildir.h"
#include "lib/log.h"

#include <errno.h>
#include <lz4frame.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define STORE_MAILBOX_CACHE_MAX 100000
#define STORE_DELIVER_ATTEMPTS 3
#define STORE_NAS_CLOCK_REFRESH_MS 60000
#define LZ4_MAGIC 0x184D2204U
#define LZ4_CHUNK (64 * 1024)

void store_settings_defaults(struct store_settings *set)
{
	memset(set, 0, sizeof(*set));
	set->fsync = true;
	set->lock_timeout_secs = 120;
}

static void no_free(void *value)
{
}

int store_new(struct mf_io *io, const struct store_settings *set,
	      struct store **store_r, const char **error_r)
{
	char host[256] = "";

	*store_r = NULL;
	if (set->hostname == NULL && gethostname(host, sizeof(host) - 1) < 0) {
		*error_r = "gethostname() failed";
		return -1;
	}
	struct store *store = mf_calloc(1, sizeof(*store));
	store->io = io;
	store->set = *set;
	store->set.hostname = NULL;
	if (store->set.lock_timeout_secs == 0)
		store->set.lock_timeout_secs = 120;
	store->host = maildir_host_sanitize(set->hostname != NULL ? set->hostname : host);
	pthread_mutex_init(&store->lock, NULL);
	scache_init(&store->mailboxes, STORE_MAILBOX_CACHE_MAX, no_free);
	store->snapshots = mailbox_snapshots_new();
	store_usage_init(store);
	*store_r = store;
	return 0;
}

void store_free(struct store **store)
{
	struct store *s = *store;

	if (s == NULL)
		return;
	*store = NULL;
	store_usage_deinit(s);
	store_lock_tokens_free(s);
	mailbox_snapshots_free(&s->snapshots);
	scache_deinit(&s->mailboxes);
	pthread_mutex_destroy(&s->lock);
	io_free(&s->io);
	free(s->host);
	free(s);
}

struct mf_io *store_io(struct store *store)
{
	return store->io;
}

uint64_t store_next_counter(struct store *store)
{
	pthread_mutex_lock(&store->lock);
	uint64_t n = ++store->counter;
	pthread_mutex_unlock(&store->lock);
	return n;
}

static int64_t local_now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* Creates, stats and removes a probe file at the root. *fine_r: its mtime
 * has a fraction of a second (a NAS with 1-second timestamps has none). */
static int nas_clock_probe(struct store *store, int64_t *offset_us_r, bool *fine_r)
{
	char *path = mf_asprintf(".mailfleet-clock.%s.%d.%llu", store->host, (int)getpid(),
				 (unsigned long long)store_next_counter(store));
	struct io_file *file;
	struct io_stat st;
	int64_t before = local_now_us();
	int ret = io_open(store->io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &file);

	if (ret == 0) {
		ret = io_fstat(file, &st);
		io_close(&file);
		io_unlink(store->io, path);
	}
	free(path);
	if (ret < 0)
		return -1;
	int64_t mid = before + (local_now_us() - before) / 2;
	*offset_us_r = st.mtime_sec * 1000000 + st.mtime_nsec / 1000 - mid;
	*fine_r = st.mtime_nsec != 0;
	return 0;
}

/* The NAS's now in microseconds; *fine_r (may be NULL): its timestamps
 * were found to be finer than a second. */
static int64_t nas_now_us(struct store *store, bool measure, bool *fine_r)
{
	int64_t offset = 0;
	bool fine = false;

	pthread_mutex_lock(&store->lock);
	bool fresh = !measure && store->nas_offset_valid &&
		mf_now_ms() - store->nas_offset_at_ms < STORE_NAS_CLOCK_REFRESH_MS;
	offset = store->nas_offset_us;
	fine = store->nas_mtime_fine;
	pthread_mutex_unlock(&store->lock);
	if (!fresh && nas_clock_probe(store, &offset, &fine) == 0) {
		pthread_mutex_lock(&store->lock);
		store->nas_offset_us = offset;
		store->nas_offset_valid = true;
		store->nas_offset_at_ms = mf_now_ms();
		store->nas_mtime_fine = fine;
		pthread_mutex_unlock(&store->lock);
	}
	if (fine_r != NULL)
		*fine_r = fine;
	return local_now_us() + offset;
}

int64_t store_nas_now(struct store *store)
{
	return nas_now_us(store, false, NULL) / 1000000;
}

int64_t store_nas_now_measured(struct store *store)
{
	return nas_now_us(store, true, NULL) / 1000000;
}

int64_t store_nas_now_us(struct store *store, bool *fine_r)
{
	return nas_now_us(store, false, fine_r);
}

static bool mailbox_known(struct store *store, const char *mbox)
{
	pthread_mutex_lock(&store->lock);
	bool known = scache_get(&store->mailboxes, mbox) != NULL;
	pthread_mutex_unlock(&store->lock);
	return known;
}

static void mailbox_set_known(struct store *store, const char *mbox, bool known)
{
	pthread_mutex_lock(&store->lock);
	if (known)
		scache_put(&store->mailboxes, mbox, (void *)1);
	else
		scache_remove(&store->mailboxes, mbox);
	pthread_mutex_unlock(&store->lock);
}

static int mailbox_mkdirs(struct store *store, const char *mbox, bool folder)
{
	static const char *const subdirs[] = { "tmp", "new", "cur" };

	for (size_t i = 0; i < MF_N_ELEMENTS(subdirs); i++) {
		char *path = mf_asprintf("%s/%s", mbox, subdirs[i]);
		int ret = io_mkdir_parents(store->io, path, 0700);
		free(path);
		if (ret < 0)
			return -1;
	}
	if (folder) {
		/* maildir++ marks folders with an empty "maildirfolder" file */
		char *path = mf_asprintf("%s/maildirfolder", mbox);
		struct io_file *file;
		int ret = io_open(store->io, path, IO_O_WRONLY | IO_O_CREAT, 0600, &file);
		free(path);
		if (ret < 0 || io_close(&file) < 0)
			return -1;
	}
	mailbox_set_known(store, mbox, true);
	return 0;
}

int store_folder_create(struct store *store, const char *domain, const char *user, const char *folder)
{
	char *mbox = maildir_mailbox_path(domain, user, folder);
	int ret;

	if (mbox == NULL)
		return -1;
	if (maildir_folder_is_inbox(folder)) {
		ret = mailbox_mkdirs(store, mbox, false);
	} else {
		ret = store_folder_create(store, domain, user, NULL);
		if (ret == 0)
			ret = mailbox_mkdirs(store, mbox, true);
	}
	free(mbox);
	return ret;
}

int store_folder_exists(struct store *store, const char *domain, const char *user, const char *folder)
{
	char *mbox = maildir_mailbox_path(domain, user, folder);
	struct io_stat st;

	if (mbox == NULL)
		return -1;
	int ret = io_stat(store->io, mbox, &st);
	free(mbox);
	if (ret == 0)
		return S_ISDIR(st.mode) ? 1 : 0;
	return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
}

/* Makes sure the mailbox can take a delivery: the inbox is created on first
 * delivery; a folder must exist already (ENOENT). */
static int mailbox_ensure(struct store *store, const char *mbox, const char *domain,
			  const char *user, const char *folder, const char **error_r)
{
	struct io_stat st;

	if (mailbox_known(store, mbox))
		return 0;
	if (maildir_folder_is_inbox(folder)) {
		if (store_folder_create(store, domain, user, NULL) == 0)
			return 0;
		*error_r = "cannot create the Maildir";
		return -1;
	}
	if (io_stat(store->io, mbox, &st) < 0) {
		*error_r = errno == ENOENT ? "folder does not exist" : "cannot stat the folder";
		return -1;
	}
	mailbox_set_known(store, mbox, true);
	return 0;
}

static int write_plain(struct io_file *file, const struct iovec *iov, int iovcnt, uint64_t *written_r)
{
	for (int i = 0; i < iovcnt; i++) {
		if (io_write_all(file, iov[i].iov_base, iov[i].iov_len) < 0)
			return -1;
		*written_r += iov[i].iov_len;
	}
	return 0;
}

static int lz4_emit(struct io_file *file, const void *data, size_t ret, uint64_t *written_r)
{
	if (LZ4F_isError(ret)) {
		log_error("store: lz4 compression failed: %s", LZ4F_getErrorName(ret));
		errno = EIO;
		return -1;
	}
	if (io_write_all(file, data, ret) < 0)
		return -1;
	*written_r += ret;
	return 0;
}

static int write_lz4_body(struct io_file *file, LZ4F_cctx *cctx, const LZ4F_preferences_t *prefs,
			  const struct iovec *iov, int iovcnt, uint64_t *written_r)
{
	size_t cap = LZ4F_compressBound(LZ4_CHUNK, prefs);
	unsigned char *out = mf_malloc(MF_MAX(cap, (size_t)LZ4F_HEADER_SIZE_MAX));
	int ret = lz4_emit(file, out, LZ4F_compressBegin(cctx, out, cap, prefs), written_r);

	for (int i = 0; i < iovcnt && ret == 0; i++) {
		const unsigned char *p = iov[i].iov_base;
		for (size_t left = iov[i].iov_len; left > 0 && ret == 0;) {
			size_t n = MF_MIN(left, (size_t)LZ4_CHUNK);
			ret = lz4_emit(file, out, LZ4F_compressUpdate(cctx, out, cap, p, n, NULL), written_r);
			p += n;
			left -= n;
		}
	}
	if (ret == 0)
		ret = lz4_emit(file, out, LZ4F_compressEnd(cctx, out, cap, NULL), written_r);
	free(out);
	return ret;
}

static int write_lz4(struct io_file *file, const struct iovec *iov, int iovcnt, size_t size,
		     int level, uint64_t *written_r)
{
	LZ4F_preferences_t prefs;
	LZ4F_cctx *cctx;

	memset(&prefs, 0, sizeof(prefs));
	prefs.frameInfo.contentSize = size;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	prefs.compressionLevel = level;
	if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION))) {
		errno = ENOMEM;
		return -1;
	}
	int ret = write_lz4_body(file, cctx, &prefs, iov, iovcnt, written_r);
	LZ4F_freeCompressionContext(cctx);
	return ret;
}

/* rename() over NFS may report ENOENT or EEXIST when a retransmitted request
 * found its own earlier success; then the target holds our file. */
static int rename_checked(struct store *store, const char *from, const char *to, uint64_t file_size)
{
	struct io_stat st;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (io_rename(store->io, from, to) == 0)
			return 0;
		int err = errno;
		if (err == ESTALE && attempt == 0)
			continue;
		if ((err == ENOENT || err == EEXIST) && io_stat(store->io, to, &st) == 0 &&
		    st.size == file_size && io_stat(store->io, from, &st) < 0 && errno == ENOENT) {
			log_warn("store: rename reported %s but the target is in place", strerror(err));
			return 0;
		}
		errno = err;
		return -1;
	}
	return -1;
}

struct deliver_ctx {
	struct store *store;
	const char *mbox;
	const struct iovec *iov;
	int iovcnt;
	size_t size;
	uint64_t vsize;   /* size with every bare LF counted as CRLF (IMAP, POP3) */
	char *name, *tmp_path, *new_path;
	uint64_t written;
	const char *error;
};

static int deliver_write(struct deliver_ctx *d, struct io_file *file)
{
	const struct store_settings *set = &d->store->set;
	int ret;

	if (set->compress_lz4)
		ret = write_lz4(file, d->iov, d->iovcnt, d->size, set->lz4_level, &d->written);
	else
		ret = write_plain(file, d->iov, d->iovcnt, &d->written);
	if (ret < 0) {
		d->error = "writing the message failed";
		return -1;
	}
	if (set->fsync && io_fsync(file) < 0) {
		d->error = "fsync of the message failed";
		return -1;
	}
	return 0;
}

/* One attempt with a fresh unique name. On failure nothing of it is left. */
static int deliver_once(struct deliver_ctx *d)
{
	struct mf_io *io = d->store->io;
	struct io_file *file;
	int err;

	d->written = 0;
	d->name = maildir_unique_name(d->store->host, store_next_counter(d->store), d->size, d->vsize);
	d->tmp_path = mf_asprintf("%s/tmp/%s", d->mbox, d->name);
	d->new_path = mf_asprintf("%s/new/%s", d->mbox, d->name);
	if (io_open(io, d->tmp_path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &file) < 0) {
		d->error = "cannot create the file in tmp/";
		return -1;
	}
	int ret = deliver_write(d, file);
	err = errno;
	if (io_close(&file) < 0 && ret == 0) {
		err = errno;
		d->error = "close of the message failed";
		ret = -1;
	}
	if (ret == 0 && rename_checked(d->store, d->tmp_path, d->new_path, d->written) < 0) {
		err = errno;
		d->error = "rename into new/ failed";
		ret = -1;
	}
	if (ret == 0 && d->store->set.fsync) {
		char *new_dir = mf_asprintf("%s/new", d->mbox);
		if (io_fsync_dir(io, new_dir) < 0) {
			err = errno;
			d->error = "fsync of new/ failed";
			/* not durable, so not delivered: take it back */
			io_unlink(io, d->new_path);
			ret = -1;
		}
		free(new_dir);
	}
	if (ret < 0)
		io_unlink(io, d->tmp_path);
	errno = err;
	return ret;
}

static void deliver_reset(struct deliver_ctx *d)
{
	mf_free(&d->name);
	mf_free(&d->tmp_path);
	mf_free(&d->new_path);
}

/* The size clients see: every LF not preceded by CR becomes CRLF. Stored in
 * the name as W= so IMAP and POP3 never open a file to learn a size. */
static uint64_t iov_vsize(const struct iovec *iov, int iovcnt)
{
	uint64_t vsize = 0;
	unsigned char prev = 0;

	for (int i = 0; i < iovcnt; i++) {
		const unsigned char *p = iov[i].iov_base;
		for (size_t j = 0; j < iov[i].iov_len; j++) {
			if (p[j] == '\n' && prev != '\r')
				vsize++;
			prev = p[j];
		}
		vsize += iov[i].iov_len;
	}
	return vsize;
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	return total;
}

int store_deliver(struct store *store, const char *domain, const char *user,
		  const char *folder, const struct iovec *iov, int iovcnt, size_t size,
		  char **basename_r, const char **error_r)
{
	struct deliver_ctx d = { .store = store, .iov = iov, .iovcnt = iovcnt, .size = size };
	char *mbox = maildir_mailbox_path(domain, user, folder);
	bool stale_retried = false, recreated = false;
	int ret = -1, err;

	*basename_r = NULL;
	if (mbox == NULL) {
		*error_r = "invalid domain, user or folder name";
		return -1;
	}
	if (iov_total(iov, iovcnt) != size) {
		free(mbox);
		*error_r = "message size does not match its parts";
		errno = EINVAL;
		return -1;
	}
	d.mbox = mbox;
	d.vsize = iov_vsize(iov, iovcnt);
	if (mailbox_ensure(store, mbox, domain, user, folder, error_r) < 0) {
		err = errno;
		free(mbox);
		errno = err;
		return -1;
	}
	for (int attempt = 0; attempt < STORE_DELIVER_ATTEMPTS; attempt++) {
		if ((ret = deliver_once(&d)) == 0)
			break;
		err = errno;
		deliver_reset(&d);
		if (err == ESTALE && !stale_retried) {
			stale_retried = true;
		} else if (err == ENOENT && !recreated) {
			/* the mailbox vanished under us (or a stale cache entry) */
			recreated = true;
			mailbox_set_known(store, mbox, false);
			if (mailbox_ensure(store, mbox, domain, user, folder, &d.error) < 0)
				break;
		} else if (err != EEXIST) {
			break;
		}
		errno = err;
	}
	err = errno;
	if (ret == 0) {
		*basename_r = d.name;
		d.name = NULL;
		store_usage_delivered(store, domain, user, size);
	} else {
		*error_r = d.error;
	}
	deliver_reset(&d);
	free(mbox);
	errno = err;
	return ret;
}

static int lz4_decompress(const unsigned char *src, size_t src_len, size_t max_size,
			  unsigned char **data_r, size_t *len_r)
{
	LZ4F_dctx *dctx;
	LZ4F_frameInfo_t info;
	size_t cap = 64 * 1024, len = 0, in = src_len, ret;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		errno = ENOMEM;
		return -1;
	}
	ret = LZ4F_getFrameInfo(dctx, &info, src, &in);
	if (!LZ4F_isError(ret) && info.contentSize > 0 && info.contentSize <= max_size)
		cap = (size_t)info.contentSize + 1;
	unsigned char *out = mf_malloc(cap);
	size_t pos = LZ4F_isError(ret) ? src_len : in;
	while (!LZ4F_isError(ret) && ret != 0) {
		if (len == cap) {
			if (cap > max_size)
				break;
			cap *= 2;
			out = mf_realloc(out, cap);
		}
		size_t out_n = cap - len, in_n = src_len - pos;
		ret = LZ4F_decompress(dctx, out + len, &out_n, src + pos, &in_n, NULL);
		len += out_n;
		pos += in_n;
		if (out_n == 0 && in_n == 0)
			break; /* truncated frame: no progress possible */
	}
	LZ4F_freeDecompressionContext(dctx);
	if (LZ4F_isError(ret) || ret != 0 || len > max_size) {
		free(out);
		errno = len > max_size ? EFBIG : EBADMSG;
		return -1;
	}
	*data_r = out;
	*len_r = len;
	return 0;
}

static bool is_lz4(const unsigned char *data, size_t len)
{
	return len >= 4 && (data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
			    (uint32_t)data[3] << 24) == LZ4_MAGIC;
}

int store_read_message(struct store *store, const char *path, size_t max_size,
		       unsigned char **data_r, size_t *len_r)
{
	char *raw;
	size_t raw_len;
	/* room for a compressed file of an incompressible max_size message */
	size_t raw_max = max_size + max_size / 255 + 1024;

	*data_r = NULL;
	*len_r = 0;
	if (io_read_file(store->io, path, raw_max, &raw, &raw_len) < 0)
		return -1;
	if (!is_lz4((unsigned char *)raw, raw_len)) {
		if (raw_len > max_size) {
			free(raw);
			errno = EFBIG;
			return -1;
		}
		*data_r = (unsigned char *)raw;
		*len_r = raw_len;
		return 0;
	}
	int ret = lz4_decompress((unsigned char *)raw, raw_len, max_size, data_r, len_r);
	int err = errno;
	free(raw);
	errno = err;
	return ret;
}

/* --- scache --- */

static unsigned scache_hash(const char *key)
{
	unsigned h = 2166136261u;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h % SCACHE_BUCKETS;
}

void scache_init(struct scache *c, size_t max, void (*value_free)(void *value))
{
	memset(c, 0, sizeof(*c));
	c->max = max;
	c->value_free = value_free;
}

void scache_deinit(struct scache *c)
{
	for (size_t i = 0; i < SCACHE_BUCKETS; i++) {
		struct scache_entry *e, *next;
		for (e = c->buckets[i]; e != NULL; e = next) {
			next = e->next;
			c->value_free(e->value);
			free(e->key);
			free(e);
		}
		c->buckets[i] = NULL;
	}
	c->count = 0;
}

void *scache_get(struct scache *c, const char *key)
{
	for (struct scache_entry *e = c->buckets[scache_hash(key)]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0)
			return e->value;
	}
	return NULL;
}

void scache_put(struct scache *c, const char *key, void *value)
{
	unsigned h = scache_hash(key);

	for (struct scache_entry *e = c->buckets[h]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			c->value_free(e->value);
			e->value = value;
			return;
		}
	}
	if (c->count >= c->max)
		scache_deinit(c);
	struct scache_entry *e = mf_calloc(1, sizeof(*e));
	e->key = mf_strdup(key);
	e->value = value;
	e->next = c->buckets[h];
	c->buckets[h] = e;
	c->count++;
}

void scache_remove(struct scache *c, const char *key)
{
	for (struct scache_entry **ep = &c->buckets[scache_hash(key)]; *ep != NULL; ep = &(*ep)->next) {
		if (strcmp((*ep)->key, key) == 0) {
			struct scache_entry *e = *ep;
			*ep = e->next;
			c->value_free(e->value);
			free(e->key);
			free(e);
			c->count--;
			return;
		}
	}
}
