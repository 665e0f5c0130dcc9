/* mailbox-index.c: the per-mailbox index log (see mailbox-index.h):
 * encoding, replay, reconciliation with the maildir, appends and rewrites.
 * Integers are stored little-endian whatever the node's byte order. */
#include "store/mailbox-index.h"
#include "store/store-private.h"
#include "store/mailbox-private.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static const char index_magic[8] = { 'M', 'F', 'I', 'N', 'D', 'E', 'X', '1' };

/* ---- encoding ---- */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t crc(const unsigned char *p, size_t len)
{
	return (uint32_t)crc32(0L, p, (uInt)len);
}

void mailbox_index_encode_rec(unsigned char out[MAILBOX_INDEX_RECORD_SIZE], uint8_t type,
			      const struct mailbox_index_rec *rec)
{
	memset(out, 0, MAILBOX_INDEX_RECORD_SIZE);
	out[0] = type;
	put32(out + 4, rec->uid);
	put64(out + 8, rec->modseq);
	put32(out + 16, rec->flags);
	put32(out + 20, rec->keywords);
	put64(out + 24, rec->size);
	put64(out + 32, rec->vsize);
	put64(out + 40, (uint64_t)rec->date);
	put32(out + 48, rec->cache_off);
	put32(out + 52, crc(out, 52));
}

static bool decode_rec(const unsigned char *p, uint8_t *type_r, struct mailbox_index_rec *rec)
{
	if (get32(p + 52) != crc(p, 52) || (p[0] != MAILBOX_INDEX_REC_MSG && p[0] != MAILBOX_INDEX_REC_EXPUNGE))
		return false;
	*type_r = p[0];
	rec->uid = get32(p + 4);
	rec->modseq = get64(p + 8);
	rec->flags = get32(p + 16);
	rec->keywords = get32(p + 20);
	rec->size = get64(p + 24);
	rec->vsize = get64(p + 32);
	rec->date = (int64_t)get64(p + 40);
	rec->cache_off = get32(p + 48);
	return rec->uid != 0 && rec->modseq != 0;
}

void mailbox_index_encode_header(unsigned char out[MAILBOX_INDEX_HEADER_SIZE],
				 const struct mailbox_index *idx)
{
	memset(out, 0, MAILBOX_INDEX_HEADER_SIZE);
	memcpy(out, index_magic, sizeof(index_magic));
	put32(out + 8, idx->uid_validity);
	put64(out + 16, idx->generation);
	put64(out + 24, idx->highest_modseq);
	put64(out + 32, idx->expunge_floor);
	put32(out + 60, crc(out, 60));
}

/* ---- the in-memory state ---- */

struct mailbox_index *mailbox_index_new(struct store *store, const char *mbox_path)
{
	struct mailbox_index *idx = mf_calloc(1, sizeof(*idx));

	idx->store = store;
	idx->path = mf_asprintf("%s/%s", mbox_path, MAILBOX_INDEX_FILE);
	return idx;
}

static void index_reset(struct mailbox_index *idx)
{
	idx->uid_validity = 0;
	idx->generation = 0;
	idx->offset = 0;
	idx->highest_modseq = 0;
	idx->expunge_floor = 0;
	idx->superseded = 0;
	idx->count = 0;
	idx->exp_count = 0;
	idx->need_rewrite = false;
}

void mailbox_index_free(struct mailbox_index **idxp)
{
	struct mailbox_index *idx = *idxp;

	if (idx == NULL)
		return;
	free(idx->path);
	free(idx->recs);
	free(idx->expunged);
	mf_free(idxp);
}

void mailbox_index_forget(struct mailbox_index *idx)
{
	mf_free(&idx->recs);
	mf_free(&idx->expunged);
	idx->count = idx->cap = 0;
	idx->exp_count = idx->exp_cap = 0;
	idx->offset = 0;
	idx->superseded = 0;
}

/* Copies count elements of size bytes from src into dst (capacity *cap),
 * growing it; returns dst. */
static void *array_copy(void *dst, size_t *cap, const void *src, size_t count, size_t size)
{
	if (*cap < count) {
		*cap = count;
		dst = mf_realloc(dst, count * size);
	}
	if (count > 0)
		memcpy(dst, src, count * size);
	return dst;
}

void mailbox_index_copy(struct mailbox_index *dst, const struct mailbox_index *src)
{
	dst->uid_validity = src->uid_validity;
	dst->generation = src->generation;
	dst->offset = src->offset;
	dst->highest_modseq = src->highest_modseq;
	dst->expunge_floor = src->expunge_floor;
	dst->superseded = src->superseded;
	dst->need_rewrite = src->need_rewrite;
	dst->recs = array_copy(dst->recs, &dst->cap, src->recs, src->count, sizeof(*src->recs));
	dst->count = src->count;
	dst->expunged = array_copy(dst->expunged, &dst->exp_cap, src->expunged, src->exp_count,
				   sizeof(*src->expunged));
	dst->exp_count = src->exp_count;
}

/* Index of the first record with uid >= the given one. */
static size_t rec_pos(const struct mailbox_index *idx, uint32_t uid)
{
	size_t lo = 0, hi = idx->count;

	if (idx->count > 0 && idx->recs[idx->count - 1].uid < uid)
		return idx->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (idx->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct mailbox_index_rec *mailbox_index_lookup(const struct mailbox_index *idx, uint32_t uid)
{
	size_t pos = rec_pos(idx, uid);

	return pos < idx->count && idx->recs[pos].uid == uid ? &idx->recs[pos] : NULL;
}

static void apply_msg(struct mailbox_index *idx, const struct mailbox_index_rec *rec)
{
	size_t pos = rec_pos(idx, rec->uid);

	if (pos < idx->count && idx->recs[pos].uid == rec->uid) {
		idx->recs[pos] = *rec;
		idx->superseded++;
		return;
	}
	if (idx->count == idx->cap) {
		idx->cap = idx->cap < 64 ? 64 : idx->cap * 2;
		idx->recs = mf_realloc(idx->recs, idx->cap * sizeof(*idx->recs));
	}
	memmove(&idx->recs[pos + 1], &idx->recs[pos], (idx->count - pos) * sizeof(*idx->recs));
	idx->recs[pos] = *rec;
	idx->count++;
}

static void apply_expunge(struct mailbox_index *idx, uint32_t uid, uint64_t modseq)
{
	size_t pos = rec_pos(idx, uid);

	if (pos < idx->count && idx->recs[pos].uid == uid) {
		memmove(&idx->recs[pos], &idx->recs[pos + 1], (idx->count - pos - 1) * sizeof(*idx->recs));
		idx->count--;
		idx->superseded++;
	}
	if (idx->exp_count == idx->exp_cap) {
		idx->exp_cap = idx->exp_cap < 64 ? 64 : idx->exp_cap * 2;
		idx->expunged = mf_realloc(idx->expunged, idx->exp_cap * sizeof(*idx->expunged));
	}
	idx->expunged[idx->exp_count++] = (struct mailbox_index_expunge){ .uid = uid, .modseq = modseq };
}

/* Replays whole records from data; stops at the first bad one. */
static size_t apply_records(struct mailbox_index *idx, const unsigned char *data, size_t len)
{
	size_t done = 0;

	while (len - done >= MAILBOX_INDEX_RECORD_SIZE) {
		struct mailbox_index_rec rec;
		uint8_t type;
		if (!decode_rec(data + done, &type, &rec))
			break;
		if (type == MAILBOX_INDEX_REC_MSG)
			apply_msg(idx, &rec);
		else
			apply_expunge(idx, rec.uid, rec.modseq);
		if (rec.modseq > idx->highest_modseq)
			idx->highest_modseq = rec.modseq;
		done += MAILBOX_INDEX_RECORD_SIZE;
	}
	if (done != len)
		idx->need_rewrite = true;
	return done;
}

static bool parse_header(struct mailbox_index *idx, const unsigned char *p, size_t len)
{
	if (len < MAILBOX_INDEX_HEADER_SIZE || memcmp(p, index_magic, sizeof(index_magic)) != 0 ||
	    get32(p + 60) != crc(p, 60))
		return false;
	idx->uid_validity = get32(p + 8);
	idx->generation = get64(p + 16);
	idx->highest_modseq = get64(p + 24);
	idx->expunge_floor = get64(p + 32);
	return true;
}

void mailbox_index_parse(struct mailbox_index *idx, const unsigned char *data, size_t len)
{
	uint64_t seen = idx->highest_modseq;

	index_reset(idx);
	if (!parse_header(idx, data, len)) {
		/* nothing usable; keep the modseq seen so far as a floor */
		idx->highest_modseq = seen;
		idx->need_rewrite = len > 0;
		return;
	}
	idx->offset = MAILBOX_INDEX_HEADER_SIZE +
		apply_records(idx, data + MAILBOX_INDEX_HEADER_SIZE, len - MAILBOX_INDEX_HEADER_SIZE);
}

/* ---- reading the file ---- */

static int read_at(struct io_file *file, uint64_t offset, size_t len, unsigned char **data_r)
{
	unsigned char *data = mf_malloc(len + 1);
	size_t done = 0;

	while (done < len) {
		ssize_t n = io_pread(file, data + done, len - done, offset + done);
		if (n < 0) {
			free(data);
			return -1;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	if (done != len) {
		free(data);
		errno = EIO;
		return -1;
	}
	*data_r = data;
	return 0;
}

static int refresh_file(struct mailbox_index *idx, struct io_file *file)
{
	unsigned char hdr[MAILBOX_INDEX_HEADER_SIZE], *data;
	struct io_stat st;
	struct mailbox_index probe = { 0 };
	uint64_t from;

	if (io_fstat(file, &st) < 0)
		return -1;
	if (st.size > MAILBOX_INDEX_MAX_SIZE) {
		index_reset(idx);
		idx->need_rewrite = true;
		return 0;
	}
	ssize_t n = io_pread(file, hdr, sizeof(hdr), 0);
	if (n < 0)
		return -1;
	bool same = idx->offset != 0 && parse_header(&probe, hdr, (size_t)n) &&
		probe.generation == idx->generation && st.size >= idx->offset;
	from = same ? idx->offset : 0;
	if (read_at(file, from, (size_t)(st.size - from), &data) < 0)
		return -1;
	if (same)
		idx->offset += apply_records(idx, data, (size_t)(st.size - from));
	else
		mailbox_index_parse(idx, data, (size_t)st.size);
	free(data);
	return 0;
}

int mailbox_index_refresh(struct mailbox_index *idx)
{
	struct io_file *file;
	int ret;

	if (io_open(store_io(idx->store), idx->path, IO_O_RDONLY, 0, &file) < 0) {
		if (errno != ENOENT)
			return -1;
		uint64_t seen = idx->highest_modseq;
		index_reset(idx);
		idx->highest_modseq = seen;
		return 0;
	}
	ret = refresh_file(idx, file);
	int err = errno;
	io_close(&file);
	errno = err;
	return ret;
}

/* ---- writing ---- */

static uint64_t now_usecs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int write_whole(struct mailbox_index *idx, const unsigned char *data, size_t len)
{
	struct mf_io *io = store_io(idx->store);
	char *tmp = mf_asprintf("%s.tmp", idx->path);
	struct io_file *file;
	int ret = io_open(io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file);

	if (ret == 0) {
		ret = io_write_all(file, data, len);
		if (ret == 0 && idx->store->set.fsync)
			ret = io_fsync(file);
		if (io_close(&file) < 0)
			ret = -1;
	}
	if (ret == 0)
		ret = io_rename(io, tmp, idx->path);
	if (ret < 0) {
		int err = errno;
		io_unlink(io, tmp);
		errno = err;
	}
	free(tmp);
	return ret;
}

/* Writes the whole index anew (generation + 1), keeping the newest
 * MAILBOX_INDEX_EXPUNGES_KEPT expunges. */
static int index_rewrite(struct mailbox_index *idx)
{
	size_t drop = idx->exp_count > MAILBOX_INDEX_EXPUNGES_KEPT ?
		idx->exp_count - MAILBOX_INDEX_EXPUNGES_KEPT : 0;
	size_t n = idx->count + idx->exp_count - drop, len;
	unsigned char *data, *p;
	int ret;

	for (size_t i = 0; i < drop; i++) {
		if (idx->expunged[i].modseq > idx->expunge_floor)
			idx->expunge_floor = idx->expunged[i].modseq;
	}
	if (drop > 0) {
		memmove(idx->expunged, idx->expunged + drop, (idx->exp_count - drop) * sizeof(*idx->expunged));
		idx->exp_count -= drop;
	}
	idx->generation = idx->generation + 1 > now_usecs() ? idx->generation + 1 : now_usecs();
	len = MAILBOX_INDEX_HEADER_SIZE + n * MAILBOX_INDEX_RECORD_SIZE;
	data = mf_malloc(len);
	mailbox_index_encode_header(data, idx);
	p = data + MAILBOX_INDEX_HEADER_SIZE;
	for (size_t i = 0; i < idx->count; i++, p += MAILBOX_INDEX_RECORD_SIZE)
		mailbox_index_encode_rec(p, MAILBOX_INDEX_REC_MSG, &idx->recs[i]);
	for (size_t i = 0; i < idx->exp_count; i++, p += MAILBOX_INDEX_RECORD_SIZE) {
		struct mailbox_index_rec rec = { .uid = idx->expunged[i].uid, .modseq = idx->expunged[i].modseq };
		mailbox_index_encode_rec(p, MAILBOX_INDEX_REC_EXPUNGE, &rec);
	}
	ret = write_whole(idx, data, len);
	free(data);
	if (ret == 0) {
		idx->offset = len;
		idx->superseded = 0;
		idx->need_rewrite = false;
	} else {
		idx->offset = 0;   /* read it all again next time */
	}
	return ret;
}

static int index_append(struct mailbox_index *idx, const unsigned char *data, size_t len)
{
	struct io_file *file;
	int ret = io_open(store_io(idx->store), idx->path, IO_O_WRONLY, 0, &file);

	if (ret < 0)
		return -1;
	ssize_t n = io_pwrite(file, data, len, idx->offset);
	ret = n == (ssize_t)len ? 0 : -1;
	if (n >= 0 && n != (ssize_t)len)
		errno = EIO;
	if (ret == 0 && idx->store->set.fsync)
		ret = io_fsync(file);
	if (io_close(&file) < 0)
		ret = -1;
	if (ret == 0)
		idx->offset += len;
	else
		idx->offset = 0;
	return ret;
}

/* Pending records of one update. */
struct pending {
	unsigned char *data;
	size_t count, cap;
};

static void pending_add(struct pending *p, uint8_t type, const struct mailbox_index_rec *rec)
{
	if (p->count == p->cap) {
		p->cap = p->cap < 64 ? 64 : p->cap * 2;
		p->data = mf_realloc(p->data, p->cap * MAILBOX_INDEX_RECORD_SIZE);
	}
	mailbox_index_encode_rec(p->data + p->count * MAILBOX_INDEX_RECORD_SIZE, type, rec);
	p->count++;
}

static bool rewrite_due(const struct mailbox_index *idx)
{
	return idx->offset == 0 || idx->need_rewrite ||
		idx->superseded > idx->count / 2 + 4096 ||
		idx->exp_count > 2 * MAILBOX_INDEX_EXPUNGES_KEPT;
}

static int pending_commit(struct mailbox_index *idx, struct pending *p)
{
	int ret = 0;

	if (rewrite_due(idx))
		ret = index_rewrite(idx);
	else if (p->count > 0)
		ret = index_append(idx, p->data, p->count * MAILBOX_INDEX_RECORD_SIZE);
	free(p->data);
	p->data = NULL;
	p->count = 0;
	return ret;
}

/* ---- reconciliation with the maildir ---- */

static void start_fresh(struct mailbox_index *idx, uint32_t uid_validity)
{
	/* above anything a lost or foreign index could have handed out */
	uint64_t base = idx->highest_modseq + 1 > now_usecs() ? idx->highest_modseq + 1 : now_usecs();

	index_reset(idx);
	idx->uid_validity = uid_validity;
	idx->highest_modseq = base;
	idx->expunge_floor = base;
}

static int reconcile_new(struct mailbox_index *idx, const struct uidlist_rec *ul_rec, uint64_t modseq,
			 mailbox_index_learn_fn *learn, void *learn_ctx, struct pending *p)
{
	struct mailbox_index_rec rec = { 0 };

	if (learn(learn_ctx, ul_rec, &rec) < 0)
		return errno == ENOENT ? 0 : -1;
	rec.uid = ul_rec->uid;
	rec.modseq = modseq;
	mailbox_name_flags(ul_rec->filename, &rec.flags, &rec.keywords);
	apply_msg(idx, &rec);
	pending_add(p, MAILBOX_INDEX_REC_MSG, &rec);
	return 0;
}

int mailbox_index_reconcile(struct mailbox_index *idx, const struct uidlist *ul,
			    mailbox_index_learn_fn *learn, void *learn_ctx, const char **error_r)
{
	struct pending p = { 0 };
	uint64_t modseq;
	size_t i = 0, k = 0;
	uint32_t *gone = NULL;
	size_t gone_count = 0;

	if (idx->offset == 0 || idx->need_rewrite || idx->uid_validity != ul->uid_validity)
		start_fresh(idx, ul->uid_validity);
	modseq = idx->highest_modseq + 1;
	gone = mf_calloc(idx->count + 1, sizeof(*gone));
	/* merge: both ascending by UID */
	while (i < ul->count || k < idx->count) {
		if (k == idx->count || (i < ul->count && ul->recs[i].uid < idx->recs[k].uid)) {
			i++;   /* new: after the merge, so the array is not shifted under k */
			continue;
		}
		if (i == ul->count || idx->recs[k].uid < ul->recs[i].uid) {
			gone[gone_count++] = idx->recs[k++].uid;
			continue;
		}
		struct mailbox_index_rec *rec = &idx->recs[k];
		uint32_t flags, kw;
		mailbox_name_flags(ul->recs[i].filename, &flags, &kw);
		if (flags != rec->flags || kw != rec->keywords) {
			rec->flags = flags;
			rec->keywords = kw;
			rec->modseq = modseq;
			idx->superseded++;
			pending_add(&p, MAILBOX_INDEX_REC_MSG, rec);
		}
		i++;
		k++;
	}
	for (size_t g = 0; g < gone_count; g++) {
		struct mailbox_index_rec rec = { .uid = gone[g], .modseq = modseq };
		apply_expunge(idx, gone[g], modseq);
		pending_add(&p, MAILBOX_INDEX_REC_EXPUNGE, &rec);
	}
	free(gone);
	for (i = 0; i < ul->count; i++) {
		if (mailbox_index_lookup(idx, ul->recs[i].uid) == NULL &&
		    reconcile_new(idx, &ul->recs[i], modseq, learn, learn_ctx, &p) < 0) {
			free(p.data);
			idx->offset = 0;
			*error_r = "cannot read a message file";
			return -1;
		}
	}
	if (p.count > 0 && modseq > idx->highest_modseq)
		idx->highest_modseq = modseq;
	if (pending_commit(idx, &p) < 0) {
		*error_r = "cannot write the mailbox index";
		return -1;
	}
	return 0;
}

int mailbox_index_set_flags(struct mailbox_index *idx, struct mailbox_index_rec *changes,
			    size_t count, const char **error_r)
{
	struct pending p = { 0 };
	uint64_t modseq = idx->highest_modseq + 1;

	for (size_t i = 0; i < count; i++) {
		size_t pos = rec_pos(idx, changes[i].uid);
		if (pos == idx->count || idx->recs[pos].uid != changes[i].uid)
			continue;
		struct mailbox_index_rec *rec = &idx->recs[pos];
		if (rec->flags == changes[i].flags && rec->keywords == changes[i].keywords) {
			changes[i].modseq = rec->modseq;
			continue;
		}
		rec->flags = changes[i].flags;
		rec->keywords = changes[i].keywords;
		rec->modseq = modseq;
		changes[i].modseq = modseq;
		idx->superseded++;
		pending_add(&p, MAILBOX_INDEX_REC_MSG, rec);
	}
	if (p.count > 0)
		idx->highest_modseq = modseq;
	if (pending_commit(idx, &p) < 0) {
		*error_r = "cannot write the mailbox index";
		return -1;
	}
	return 0;
}

int mailbox_index_set_cache(struct mailbox_index *idx, const uint32_t *uids, const uint32_t *offs,
			    size_t count, const char **error_r)
{
	struct pending p = { 0 };

	for (size_t i = 0; i < count; i++) {
		size_t pos = rec_pos(idx, uids[i]);
		if (pos == idx->count || idx->recs[pos].uid != uids[i] || idx->recs[pos].cache_off == offs[i])
			continue;
		idx->recs[pos].cache_off = offs[i];
		idx->superseded++;
		pending_add(&p, MAILBOX_INDEX_REC_MSG, &idx->recs[pos]);
	}
	if (pending_commit(idx, &p) < 0) {
		*error_r = "cannot write the mailbox index";
		return -1;
	}
	return 0;
}
