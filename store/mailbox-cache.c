/* mailbox-cache.c: the per-mailbox cache file (see mailbox-cache.h):
 * entry encoding, windowed reads, appends under the mailbox lock. */
#include "store/mailbox-cache.h"
#include "store/mailbox-index.h"
#include "store/mailbox-private.h"
#include "store/store-lock.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define CACHE_MAGIC "MFCACHE1"
#define CACHE_HEADER_SIZE 16
#define ENTRY_MAGIC 0x4543464du     /* "MFCE" little-endian */
#define ENTRY_HEAD 16

struct mailbox_cache {
	unsigned char *win;          /* read window */
	uint64_t win_start;
	size_t win_len;
	size_t win_next;             /* size of the next window read, doubling */
	struct buf queued;           /* encoded entries not yet written */
	uint32_t *queued_uids;
	size_t *queued_pos;          /* offset of each entry in queued */
	size_t queued_count, queued_cap;
};

static const char *const cached_headers[] = { MAILBOX_CACHE_HEADER_NAMES };

bool mailbox_cache_header_cached(const char *name, size_t len)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(cached_headers); i++) {
		if (strlen(cached_headers[i]) == len && strncasecmp(cached_headers[i], name, len) == 0)
			return true;
	}
	return false;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static struct mailbox_cache *cache_get(struct mailbox *box)
{
	if (box->cache == NULL) {
		box->cache = mf_calloc(1, sizeof(*box->cache));
		buf_init(&box->cache->queued, 0);
	}
	return box->cache;
}

/* ---- reading ---- */

static char *cache_path(const struct mailbox *box)
{
	return mf_asprintf("%s/%s", box->path, MAILBOX_CACHE_FILE);
}

/* Reads [off, off + len) (or less at the end of the file) into the window. */
static int window_read(struct mailbox *box, uint64_t off, size_t len)
{
	struct mailbox_cache *c = cache_get(box);
	char *path = cache_path(box);
	struct io_file *file;
	size_t done = 0;
	int ret = io_open(store_io(box->store), path, IO_O_RDONLY, 0, &file);

	free(path);
	if (ret < 0)
		return -1;
	c->win = mf_realloc(c->win, len);
	while (done < len) {
		ssize_t n = io_pread(file, c->win + done, len - done, off + done);
		if (n <= 0) {
			ret = n < 0 ? -1 : 0;
			break;
		}
		done += (size_t)n;
	}
	io_close(&file);
	c->win_start = off;
	c->win_len = ret == 0 ? done : 0;
	return ret;
}

static bool in_window(const struct mailbox_cache *c, uint64_t off, size_t len)
{
	return c->win != NULL && off >= c->win_start && off + len <= c->win_start + c->win_len;
}

static bool entry_decode(const unsigned char *p, size_t body_len, struct mailbox_cache_entry *e)
{
	size_t pos = 0;

	for (int f = 0; f < MAILBOX_CACHE_FIELD_COUNT; f++) {
		if (body_len - pos < 4)
			return false;
		size_t len = get32(p + pos);
		pos += 4;
		if (len > body_len - pos)
			return false;
		e->data[f] = (const char *)p + pos;
		e->len[f] = len;
		pos += len;
	}
	return pos == body_len;
}

int mailbox_cache_entry_parse(const unsigned char *p, size_t avail, uint32_t uid,
			      struct mailbox_cache_entry *e)
{
	if (avail < ENTRY_HEAD || get32(p) != ENTRY_MAGIC || get32(p + 4) != uid)
		return -1;
	uint32_t body_len = get32(p + 8);
	if (body_len > MAILBOX_CACHE_ENTRY_MAX)
		return -1;
	if (avail - ENTRY_HEAD < body_len)
		return 0;
	if (get32(p + 12) != (uint32_t)crc32(0L, p + ENTRY_HEAD, body_len) ||
	    !entry_decode(p + ENTRY_HEAD, body_len, e))
		return -1;
	return 1;
}

bool mailbox_cache_lookup(struct mailbox *box, unsigned idx, struct mailbox_cache_entry *e)
{
	const struct mailbox_msg *m = &box->msgs[idx];
	struct mailbox_cache *c = cache_get(box);
	uint64_t off = m->cache_off;

	if (off < CACHE_HEADER_SIZE)
		return false;
	/* a FETCH of a few messages reads little; one of many reads windows
	 * growing up to MAILBOX_CACHE_WINDOW */
	if (!in_window(c, off, ENTRY_HEAD)) {
		c->win_next = c->win_next == 0 ? MAILBOX_CACHE_WINDOW_MIN :
			MF_MIN(c->win_next * 2, (size_t)MAILBOX_CACHE_WINDOW);
		if (window_read(box, off, c->win_next) < 0 || !in_window(c, off, ENTRY_HEAD))
			return false;
	}
	int ret = mailbox_cache_entry_parse(c->win + (off - c->win_start),
					    c->win_len - (size_t)(off - c->win_start), m->uid, e);
	if (ret == 0) {
		/* runs past the window: read it from its start */
		uint32_t body_len = get32(c->win + (off - c->win_start) + 8);
		if (window_read(box, off, MF_MAX(c->win_next, (size_t)ENTRY_HEAD + body_len)) < 0 ||
		    !in_window(c, off, ENTRY_HEAD))
			return false;
		ret = mailbox_cache_entry_parse(c->win, c->win_len, m->uid, e);
	}
	return ret == 1;
}

/* ---- writing ---- */

void mailbox_cache_add(struct mailbox *box, unsigned idx, const struct mailbox_cache_entry *e)
{
	struct mailbox_cache *c = cache_get(box);
	size_t body_len = 0;
	unsigned char head[ENTRY_HEAD], len4[4];

	for (int f = 0; f < MAILBOX_CACHE_FIELD_COUNT; f++)
		body_len += 4 + e->len[f];
	if (body_len > MAILBOX_CACHE_ENTRY_MAX)
		return;
	if (c->queued_count == c->queued_cap) {
		c->queued_cap = c->queued_cap < 64 ? 64 : c->queued_cap * 2;
		c->queued_uids = mf_realloc(c->queued_uids, c->queued_cap * sizeof(*c->queued_uids));
		c->queued_pos = mf_realloc(c->queued_pos, c->queued_cap * sizeof(*c->queued_pos));
	}
	c->queued_uids[c->queued_count] = box->msgs[idx].uid;
	c->queued_pos[c->queued_count++] = c->queued.len;
	size_t start = c->queued.len;
	put32(head, ENTRY_MAGIC);
	put32(head + 4, box->msgs[idx].uid);
	put32(head + 8, (uint32_t)body_len);
	buf_append(&c->queued, head, ENTRY_HEAD);
	for (int f = 0; f < MAILBOX_CACHE_FIELD_COUNT; f++) {
		put32(len4, (uint32_t)e->len[f]);
		buf_append(&c->queued, len4, 4);
		if (e->len[f] > 0)
			buf_append(&c->queued, e->data[f], e->len[f]);
	}
	put32(c->queued.data + start + 12,
	      (uint32_t)crc32(0L, c->queued.data + start + ENTRY_HEAD, (uInt)body_len));
	if (c->queued.len >= MAILBOX_CACHE_QUEUE_MAX)
		mailbox_cache_flush(box);
}

/* The cache file opened for appending, created (or replaced, when it is
 * foreign, damaged, of another UIDVALIDITY or full) as needed; *size_r is
 * where the next entry goes. */
static int cache_open_append(struct mailbox *box, size_t adding, struct io_file **file_r,
			     uint64_t *size_r)
{
	struct mf_io *io = store_io(box->store);
	char *path = cache_path(box);
	unsigned char hdr[CACHE_HEADER_SIZE];
	struct io_stat st;
	int ret = io_open(io, path, IO_O_RDWR, 0, file_r);

	if (ret == 0 && io_fstat(*file_r, &st) == 0 && st.size >= CACHE_HEADER_SIZE &&
	    st.size + adding < MAILBOX_CACHE_FILE_MAX &&
	    io_pread(*file_r, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) &&
	    memcmp(hdr, CACHE_MAGIC, 8) == 0 && get32(hdr + 8) == box->uid_validity) {
		free(path);
		*size_r = st.size;
		return 0;
	}
	if (ret == 0)
		io_close(file_r);
	/* a new file: old offsets no longer match an entry's magic/UID/CRC */
	char *tmp = mf_asprintf("%s.tmp", path);
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, CACHE_MAGIC, 8);
	put32(hdr + 8, box->uid_validity);
	ret = io_open(io, tmp, IO_O_RDWR | IO_O_CREAT | IO_O_TRUNC, 0600, file_r);
	if (ret == 0 && (io_write_all(*file_r, hdr, sizeof(hdr)) < 0 || io_rename(io, tmp, path) < 0)) {
		io_close(file_r);
		io_unlink(io, tmp);
		ret = -1;
	}
	free(tmp);
	free(path);
	*size_r = CACHE_HEADER_SIZE;
	return ret;
}

static int flush_locked(struct mailbox *box, const char **error_r)
{
	struct mailbox_cache *c = box->cache;
	struct io_file *file;
	uint64_t size;
	uint32_t *offs;
	int ret;

	if (mailbox_index_refresh(box->index) < 0) {
		*error_r = "cannot read the mailbox index";
		return -1;
	}
	if (cache_open_append(box, c->queued.len, &file, &size) < 0) {
		*error_r = "cannot open the cache file";
		return -1;
	}
	ret = io_pwrite(file, c->queued.data, c->queued.len, size) == (ssize_t)c->queued.len ? 0 : -1;
	if (io_close(&file) < 0)
		ret = -1;
	if (ret < 0) {
		*error_r = "cannot write the cache file";
		return -1;
	}
	offs = mf_calloc(c->queued_count + 1, sizeof(*offs));
	for (size_t i = 0; i < c->queued_count; i++)
		offs[i] = (uint32_t)(size + c->queued_pos[i]);
	ret = mailbox_index_set_cache(box->index, c->queued_uids, offs, c->queued_count, error_r);
	for (size_t i = 0, k = 0; ret == 0 && i < c->queued_count; i++) {
		/* both ascending in practice; a miss only skips the shortcut */
		while (k < box->count && box->msgs[k].uid < c->queued_uids[i])
			k++;
		if (k < box->count && box->msgs[k].uid == c->queued_uids[i])
			box->msgs[k].cache_off = offs[i];
	}
	free(offs);
	return ret;
}

void mailbox_cache_flush(struct mailbox *box)
{
	struct mailbox_cache *c = box->cache;
	struct store_lock *lock;
	const char *error = "cannot lock the mailbox";

	if (c == NULL || c->queued_count == 0)
		return;
	if (mailbox_lock(box->store, box->path, &lock) == 0) {
		if (flush_locked(box, &error) == 0)
			error = NULL;
		store_lock_release(&lock);
	}
	if (error != NULL)
		log_warn("mailbox %s: cache not written: %s", box->path, error);
	buf_free(&c->queued);
	buf_init(&c->queued, 0);
	c->queued_count = 0;
}

void mailbox_cache_release(struct mailbox *box)
{
	struct mailbox_cache *c = box->cache;

	if (c == NULL)
		return;
	free(c->win);
	buf_free(&c->queued);
	free(c->queued_uids);
	free(c->queued_pos);
	mf_free(&box->cache);
}
