/* uidlist.c: parser and serializer for the dovecot-uidlist version 3 format
 * (see uidlist.h). Bounded: the file size, the line length, UIDs below 2^32-1,
 * file names without '/' or control characters; anything else is rejected
 * with the line number, never guessed at. */
#include "store/uidlist.h"
#include "store/maildir.h"
#include "lib/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void uidlist_free(struct uidlist **ul)
{
	struct uidlist *u = *ul;

	if (u == NULL)
		return;
	*ul = NULL;
	for (size_t i = 0; i < u->count; i++) {
		free(u->recs[i].filename);
		free(u->recs[i].ext);
	}
	free(u->recs);
	free(u);
}

/* Parses a decimal number of 1..10 digits into 1..UINT32_MAX-1. */
static bool parse_u32(const char *s, size_t len, uint32_t *n_r)
{
	uint64_t n = 0;

	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(s[i] - '0');
	}
	if (n == 0 || n >= UINT32_MAX)
		return false;
	*n_r = (uint32_t)n;
	return true;
}

static bool guid_valid(const char *s, size_t len)
{
	if (len != 32)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (strchr("0123456789abcdefABCDEF", s[i]) == NULL || s[i] == '\0')
			return false;
	}
	return true;
}

static bool filename_valid(const char *s, size_t len)
{
	if (len == 0 || len > MAILDIR_NAME_MAX || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '/')
			return false;
	}
	return true;
}

static int parse_header(struct uidlist *ul, const char *line, size_t len, const char **error_r)
{
	bool have_v = false, have_n = false;

	if (len < 2 || line[0] != '3' || line[1] != ' ') {
		*error_r = "unsupported uidlist version (only 3 is read)";
		return -1;
	}
	for (size_t i = 2; i < len;) {
		size_t end = i;
		while (end < len && line[end] != ' ')
			end++;
		const char *v = line + i + 1;
		size_t vlen = end > i ? end - i - 1 : 0;
		if (end == i) {
			/* extra space: tolerated */
		} else if (line[i] == 'V') {
			have_v = parse_u32(v, vlen, &ul->uid_validity);
			if (!have_v) { *error_r = "bad UIDVALIDITY"; return -1; }
		} else if (line[i] == 'N') {
			have_n = parse_u32(v, vlen, &ul->next_uid);
			if (!have_n) { *error_r = "bad next UID"; return -1; }
		} else if (line[i] == 'G') {
			if (!guid_valid(v, vlen)) { *error_r = "bad mailbox GUID"; return -1; }
			memcpy(ul->guid, v, 32);
			ul->guid[32] = '\0';
		}
		i = end + 1;
	}
	if (!have_v || !have_n) {
		*error_r = "header lacks V<uidvalidity> or N<nextuid>";
		return -1;
	}
	return 0;
}

static void rec_append(struct uidlist *ul, uint32_t uid, const char *filename, size_t flen,
		       const char *ext, size_t elen)
{
	if (ul->count == ul->cap) {
		ul->cap = ul->cap * 2 + 16;
		ul->recs = mf_realloc(ul->recs, ul->cap * sizeof(*ul->recs));
	}
	struct uidlist_rec *r = &ul->recs[ul->count++];
	memset(r, 0, sizeof(*r));
	r->uid = uid;
	r->filename = mf_strndup(filename, flen);
	r->ext = elen == 0 ? NULL : mf_strndup(ext, elen);
}

/* "<uid> [<key><value> ...] :<filename>" */
static int parse_record(struct uidlist *ul, const char *line, size_t len, const char **error_r)
{
	size_t i = 0, ext_start, ext_end;
	uint32_t uid;

	while (i < len && line[i] != ' ')
		i++;
	if (!parse_u32(line, i, &uid) || i == len) {
		*error_r = "bad UID";
		return -1;
	}
	if (uid >= UINT32_MAX - 1) {
		*error_r = "UID too high";   /* next UID would not fit */
		return -1;
	}
	if (ul->count > 0 && uid <= ul->recs[ul->count - 1].uid) {
		*error_r = "UIDs not in ascending order";
		return -1;
	}
	while (i < len && line[i] == ' ')
		i++;
	ext_start = ext_end = i;
	while (i < len && line[i] != ':') {
		if (line[i] < 'A' || line[i] > 'Z') {
			*error_r = "bad extension field";
			return -1;
		}
		while (i < len && line[i] != ' ')
			i++;
		ext_end = i;
		while (i < len && line[i] == ' ')
			i++;
	}
	if (i == len || !filename_valid(line + i + 1, len - i - 1)) {
		*error_r = "missing or bad file name";
		return -1;
	}
	rec_append(ul, uid, line + i + 1, len - i - 1, line + ext_start, ext_end - ext_start);
	if (uid >= ul->next_uid)
		ul->next_uid = uid + 1;
	return 0;
}

int uidlist_parse(const char *data, size_t len, struct uidlist **ul_r,
		  unsigned *line_r, const char **error_r)
{
	struct uidlist *ul = mf_calloc(1, sizeof(*ul));
	unsigned lineno = 0;

	*ul_r = NULL;
	*line_r = 0;
	if (len > UIDLIST_MAX_SIZE) {
		*error_r = "uidlist too large";
		uidlist_free(&ul);
		return -1;
	}
	/* one allocation for the records: a line per record */
	size_t lines = 0;
	for (const char *q = data; len > 0 && (q = memchr(q, '\n', len - (size_t)(q - data))) != NULL; q++)
		lines++;
	ul->cap = lines + 1;
	ul->recs = mf_malloc(ul->cap * sizeof(*ul->recs));
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t llen = (nl == NULL ? len : (size_t)(nl - data)) - pos;
		const char *line = data + pos;
		int ret = 0;
		lineno++;
		if (llen > UIDLIST_LINE_MAX || memchr(line, '\0', llen) != NULL) {
			*error_r = llen > UIDLIST_LINE_MAX ? "line too long" : "NUL in uidlist";
			ret = -1;
		} else if (lineno == 1) {
			ret = parse_header(ul, line, llen, error_r);
		} else if (llen > 0) {
			ret = parse_record(ul, line, llen, error_r);
		}
		if (ret < 0) {
			*line_r = lineno;
			uidlist_free(&ul);
			return -1;
		}
		pos += llen + 1;
	}
	if (lineno == 0) {
		*error_r = "empty uidlist";
		*line_r = 1;
		uidlist_free(&ul);
		return -1;
	}
	*ul_r = ul;
	return 0;
}

char *uidlist_serialize(const struct uidlist *ul, size_t *len_r)
{
	struct buf b;

	buf_init(&b, 0);
	buf_printf(&b, "3 V%u N%u", ul->uid_validity, ul->next_uid);
	if (ul->guid[0] != '\0')
		buf_printf(&b, " G%s", ul->guid);
	buf_append(&b, "\n", 1);
	for (size_t i = 0; i < ul->count; i++) {
		const struct uidlist_rec *r = &ul->recs[i];
		buf_printf(&b, "%u %s%s:%s\n", r->uid, r->ext != NULL ? r->ext : "",
			   r->ext != NULL ? " " : "", r->filename);
	}
	buf_append(&b, "", 1);
	*len_r = b.len - 1;
	return (char *)b.data;
}

const struct uidlist_rec *uidlist_lookup(const struct uidlist *ul, const char *name)
{
	size_t blen = maildir_base_len(name);

	for (size_t i = 0; i < ul->count; i++) {
		const char *f = ul->recs[i].filename;
		if (maildir_base_len(f) == blen && memcmp(f, name, blen) == 0)
			return &ul->recs[i];
	}
	return NULL;
}
