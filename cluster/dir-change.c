/* dir-change.c: the change record's wire form (journal lines and, later,
 * cluster messages) and the syntax of the names it carries.
 *
 * A record is one line: "v1", the type, then the type's fields, separated by
 * tabs; values escape tab, newline and backslash as \t \n \\. Decoding takes
 * untrusted bytes: it checks every field and never reads past len. */
#include "cluster/dir-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR_FIELDS_MAX 6

enum field_kind { F_NAME, F_VALUE, F_NUMBER, F_IMAP, F_POP3 };

struct record_type {
	enum dir_change_type type;
	const char *name;
	unsigned field_count;
	enum field_kind fields[DIR_FIELDS_MAX];
};

static const struct record_type record_types[] = {
	{ DIR_CH_DOMAIN_ADD, "domain_add", 1, { F_NAME } },
	{ DIR_CH_DOMAIN_DEL, "domain_del", 1, { F_NAME } },
	{ DIR_CH_DOMAIN_QUOTA, "domain_quota", 2, { F_NAME, F_NUMBER } },
	{ DIR_CH_USER_ADD, "user_add", 3, { F_NAME, F_VALUE, F_NUMBER } },
	{ DIR_CH_USER_DEL, "user_del", 1, { F_NAME } },
	{ DIR_CH_USER_PASSWD, "user_passwd", 2, { F_NAME, F_VALUE } },
	{ DIR_CH_USER_QUOTA, "user_quota", 2, { F_NAME, F_NUMBER } },
	{ DIR_CH_USER_ACCESS, "user_access", 3, { F_NAME, F_IMAP, F_POP3 } },
	{ DIR_CH_USER_ARCHIVE, "user_archive", 2, { F_NAME, F_VALUE } },
	{ DIR_CH_ALIAS_ADD, "alias_add", 2, { F_NAME, F_VALUE } },
	{ DIR_CH_ALIAS_DEL, "alias_del", 2, { F_NAME, F_VALUE } },
};

static const struct record_type *record_type_get(enum dir_change_type type)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(record_types); i++) {
		if (record_types[i].type == type)
			return &record_types[i];
	}
	return NULL;
}

const char *dir_change_type_name(enum dir_change_type type)
{
	const struct record_type *rt = record_type_get(type);

	return rt == NULL ? "unknown" : rt->name;
}

/* --- encoding --- */

static void put_escaped(char **p, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\t': *(*p)++ = '\\'; *(*p)++ = 't'; break;
		case '\n': *(*p)++ = '\\'; *(*p)++ = 'n'; break;
		case '\\': *(*p)++ = '\\'; *(*p)++ = '\\'; break;
		default: *(*p)++ = *s; break;
		}
	}
}

static size_t field_text(const struct dir_change *ch, enum field_kind kind, char *num,
			 const char **str_r)
{
	switch (kind) {
	case F_NAME: *str_r = ch->name == NULL ? "" : ch->name; break;
	case F_VALUE: *str_r = ch->value == NULL ? "" : ch->value; break;
	case F_NUMBER:
		snprintf(num, 24, "%llu", (unsigned long long)ch->number);
		*str_r = num;
		break;
	case F_IMAP: *str_r = ch->imap_enabled ? "1" : "0"; break;
	case F_POP3: *str_r = ch->pop3_enabled ? "1" : "0"; break;
	}
	return strlen(*str_r);
}

char *dir_change_encode(const struct dir_change *ch)
{
	const struct record_type *rt = record_type_get(ch->type);
	char num[24], *out, *p;
	const char *str;
	size_t max;

	if (rt == NULL)
		return NULL;
	max = 3 + strlen(rt->name);
	for (unsigned i = 0; i < rt->field_count; i++)
		max += 1 + 2 * field_text(ch, rt->fields[i], num, &str);
	out = p = mf_malloc(max + 1);
	memcpy(p, "v1\t", 3);
	p += 3;
	memcpy(p, rt->name, strlen(rt->name));
	p += strlen(rt->name);
	for (unsigned i = 0; i < rt->field_count; i++) {
		field_text(ch, rt->fields[i], num, &str);
		*p++ = '\t';
		put_escaped(&p, str);
	}
	*p = '\0';
	if ((size_t)(p - out) > DIR_RECORD_MAX) {
		free(out);
		return NULL;
	}
	return out;
}

/* --- decoding --- */

/* Unescapes data[0..len) into out (room for len + 1); splits at tabs into
 * fields (NUL-terminated in out). */
static int split_fields(const char *data, size_t len, char *out, char **fields,
			unsigned *count_r, const char **error_r)
{
	unsigned count = 0;
	char *p = out;

	fields[count++] = p;
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (c == '\t') {
			*p++ = '\0';
			if (count == DIR_FIELDS_MAX + 2) {
				*error_r = "too many fields";
				return -1;
			}
			fields[count++] = p;
		} else if (c == '\\') {
			if (++i == len) {
				*error_r = "backslash at end of record";
				return -1;
			}
			switch (data[i]) {
			case 't': *p++ = '\t'; break;
			case 'n': *p++ = '\n'; break;
			case '\\': *p++ = '\\'; break;
			default:
				*error_r = "invalid escape sequence";
				return -1;
			}
		} else if (c == '\0' || c == '\n' || c == '\r') {
			*error_r = "control character in record";
			return -1;
		} else {
			*p++ = c;
		}
	}
	*p = '\0';
	*count_r = count;
	return 0;
}

static int parse_number(const char *s, uint64_t *num_r)
{
	uint64_t num = 0;

	if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	for (; *s != '\0'; s++) {
		unsigned digit = (unsigned char)*s - '0';
		if (digit > 9 || num > (UINT64_MAX - digit) / 10)
			return -1;
		num = num * 10 + digit;
	}
	*num_r = num;
	return 0;
}

static int parse_bool(const char *s, bool *b_r)
{
	if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
		return -1;
	*b_r = s[0] == '1';
	return 0;
}

static int decode_field(enum field_kind kind, const char *s, struct dir_change *ch,
			const char **error_r)
{
	switch (kind) {
	case F_NAME:
		if (*s == '\0') {
			*error_r = "empty name";
			return -1;
		}
		ch->name = s;
		return 0;
	case F_VALUE:
		ch->value = s;
		return 0;
	case F_NUMBER:
		if (parse_number(s, &ch->number) < 0) {
			*error_r = "invalid number";
			return -1;
		}
		return 0;
	case F_IMAP:
	case F_POP3:
		if (parse_bool(s, kind == F_IMAP ? &ch->imap_enabled : &ch->pop3_enabled) < 0) {
			*error_r = "invalid on/off value (0 or 1)";
			return -1;
		}
		return 0;
	}
	return -1;
}

static const struct record_type *record_type_find(const char *name)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(record_types); i++) {
		if (strcmp(record_types[i].name, name) == 0)
			return &record_types[i];
	}
	return NULL;
}

static int decode_fields(char **fields, unsigned count, struct dir_change *ch,
			 const char **error_r)
{
	const struct record_type *rt;

	if (count < 2 || strcmp(fields[0], "v1") != 0) {
		*error_r = "unsupported record version (expected v1)";
		return -1;
	}
	if ((rt = record_type_find(fields[1])) == NULL) {
		*error_r = "unknown record type";
		return -1;
	}
	if (count - 2 != rt->field_count) {
		*error_r = "wrong number of fields for the record type";
		return -1;
	}
	ch->type = rt->type;
	for (unsigned i = 0; i < rt->field_count; i++) {
		if (decode_field(rt->fields[i], fields[i + 2], ch, error_r) < 0)
			return -1;
	}
	return 0;
}

int dir_change_decode(const char *data, size_t len, struct dir_change *ch_r,
		      char **storage_r, const char **error_r)
{
	char *fields[DIR_FIELDS_MAX + 2], *storage;
	unsigned count;

	memset(ch_r, 0, sizeof(*ch_r));
	*storage_r = NULL;
	if (len > 0 && data[len - 1] == '\n')
		len--;
	if (len == 0) {
		*error_r = "empty record";
		return -1;
	}
	if (len > DIR_RECORD_MAX) {
		*error_r = "record too long";
		return -1;
	}
	storage = mf_malloc(len + 1);
	if (split_fields(data, len, storage, fields, &count, error_r) < 0 ||
	    decode_fields(fields, count, ch_r, error_r) < 0) {
		free(storage);
		memset(ch_r, 0, sizeof(*ch_r));
		return -1;
	}
	*storage_r = storage;
	return 0;
}

/* --- normalisation and name syntax --- */

static void lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

void dir_change_normalize(const struct dir_change *ch, struct dir_change *out,
			  char **storage_r)
{
	const char *name = ch->name == NULL ? "" : ch->name;
	const char *value = ch->value == NULL ? "" : ch->value;
	size_t name_len = strlen(name), value_len = strlen(value);
	char *storage = mf_malloc(name_len + value_len + 2);

	*out = *ch;
	memcpy(storage, name, name_len + 1);
	lower(storage);
	out->name = storage;
	if (ch->value != NULL) {
		memcpy(storage + name_len + 1, value, value_len + 1);
		if (ch->type == DIR_CH_ALIAS_ADD || ch->type == DIR_CH_ALIAS_DEL)
			lower(storage + name_len + 1);
		out->value = storage + name_len + 1;
	}
	*storage_r = storage;
}

int dir_domain_check(const char *domain, const char **error_r)
{
	size_t len = strlen(domain), label = 0;

	if (len == 0 || len > DIR_DOMAIN_MAX) {
		*error_r = "domain must be 1..253 characters";
		return -1;
	}
	for (size_t i = 0; i <= len; i++) {
		char c = domain[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63) {
				*error_r = "domain labels must be 1..63 characters";
				return -1;
			}
			if (domain[i - 1] == '-' || domain[i - label] == '-') {
				*error_r = "domain labels must not begin or end with '-'";
				return -1;
			}
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			label++;
		} else {
			*error_r = "domain may contain only a-z, 0-9, '-' and '.'";
			return -1;
		}
	}
	return 0;
}

static int localpart_check(const char *local, size_t len, const char **error_r)
{
	static const char specials[] = "!#$%&'*=?^_`{|}~-.";

	if (len == 0 || len > DIR_LOCALPART_MAX) {
		*error_r = "local part must be 1..64 characters";
		return -1;
	}
	if (local[0] == '.' || local[len - 1] == '.') {
		*error_r = "local part must not begin or end with '.'";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		char c = local[i];
		if (c == '.' && local[i + 1] == '.') {
			*error_r = "local part must not contain '..'";
			return -1;
		}
		if (c == '+') {
			*error_r = "local part must not contain '+' (the detail separator)";
			return -1;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      (c != '\0' && strchr(specials, c) != NULL))) {
			*error_r = "local part contains a character that is not allowed";
			return -1;
		}
	}
	return 0;
}

int dir_address_check(const char *address, const char **error_r)
{
	const char *at = strchr(address, '@');

	if (strlen(address) > DIR_ADDRESS_MAX) {
		*error_r = "address too long";
		return -1;
	}
	if (at == NULL || strchr(at + 1, '@') != NULL) {
		*error_r = "address must be local@domain";
		return -1;
	}
	if (localpart_check(address, (size_t)(at - address), error_r) < 0)
		return -1;
	return dir_domain_check(at + 1, error_r);
}
