/* pop3-msg.c: UIDL formatting, CRLF sizes, TOP lengths and the wire
 * conversion of stored messages; see pop3-msg.h. Pure code: no I/O. */
#include "pop3d/pop3-msg.h"

#include <string.h>

#define UIDL_FORMAT_LEN_MAX 64
#define VALUE_MAX 300

enum uidl_var { VAR_UID, VAR_UIDVALIDITY, VAR_FILENAME };

struct uidl_spec {
	bool zero_pad;
	unsigned width;
	char mods[4];
	unsigned nmods;
	enum uidl_var var;
	size_t len;       /* bytes of the format after '%' */
};

static int parse_var_name(const char *p, struct uidl_spec *spec, size_t *len_r)
{
	static const struct { const char *name; enum uidl_var var; } longs[] = {
		{ "uid", VAR_UID }, { "uidvalidity", VAR_UIDVALIDITY },
		{ "filename", VAR_FILENAME }, { "guid", VAR_FILENAME },
	};

	switch (*p) {
	case 'u': spec->var = VAR_UID; *len_r = 1; return 0;
	case 'v': spec->var = VAR_UIDVALIDITY; *len_r = 1; return 0;
	case 'f': case 'g': spec->var = VAR_FILENAME; *len_r = 1; return 0;
	case '{': break;
	default: return -1;
	}
	const char *end = strchr(p, '}');
	if (end == NULL)
		return -1;
	for (size_t i = 0; i < MF_N_ELEMENTS(longs); i++) {
		if (strlen(longs[i].name) == (size_t)(end - p - 1) &&
		    memcmp(longs[i].name, p + 1, (size_t)(end - p - 1)) == 0) {
			spec->var = longs[i].var;
			*len_r = (size_t)(end - p) + 1;
			return 0;
		}
	}
	return -1;
}

/* p points after '%'. */
static int parse_spec(const char *p, struct uidl_spec *spec)
{
	const char *start = p;
	size_t var_len;

	memset(spec, 0, sizeof(*spec));
	if (*p == '0') {
		spec->zero_pad = true;
		p++;
	}
	while (*p >= '0' && *p <= '9' && spec->width < 100)
		spec->width = spec->width * 10 + (unsigned)(*p++ - '0');
	if (spec->width >= 100)
		return -1;
	while (*p == 'X' || *p == 'L' || *p == 'U') {
		if (spec->nmods == sizeof(spec->mods))
			return -1;
		spec->mods[spec->nmods++] = *p++;
	}
	if (parse_var_name(p, spec, &var_len) < 0)
		return -1;
	spec->len = (size_t)(p - start) + var_len;
	return 0;
}

int pop3_uidl_format_check(const char *format, const char **error_r)
{
	struct uidl_spec spec;
	bool unique = false;

	if (strlen(format) > UIDL_FORMAT_LEN_MAX || format[0] == '\0') {
		*error_r = "UIDL format must be 1..64 bytes";
		return -1;
	}
	for (const char *p = format; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		if (parse_spec(p + 1, &spec) < 0) {
			*error_r = "UIDL format: unknown variable or modifier (use %u %v %f %g, 0, width, X L U)";
			return -1;
		}
		if (spec.var == VAR_UID || spec.var == VAR_FILENAME)
			unique = true;
		p += spec.len;
	}
	if (!unique) {
		*error_r = "UIDL format must contain %u, %f or %g, or UIDLs would repeat";
		return -1;
	}
	return 0;
}

/* Decimal or lower-case hex digits of n into buf (no NUL); returns the length. */
static size_t format_number(uint64_t n, bool hex, char *buf)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[24];
	size_t len = 0;
	unsigned base = hex ? 16 : 10;

	do {
		tmp[len++] = digits[n % base];
		n /= base;
	} while (n > 0);
	for (size_t i = 0; i < len; i++)
		buf[i] = tmp[len - 1 - i];
	return len;
}

/* Modifiers in order, on value[0..*len). */
static void apply_mods(const struct uidl_spec *spec, char *value, size_t *len)
{
	for (unsigned m = 0; m < spec->nmods; m++) {
		char mod = spec->mods[m];
		if (mod == 'X') {
			uint64_t n = 0;
			for (size_t i = 0; i < *len && value[i] >= '0' && value[i] <= '9' &&
			     n < UINT64_MAX / 10 - 10; i++)
				n = n * 10 + (uint64_t)(value[i] - '0');
			*len = format_number(n, true, value);
			continue;
		}
		for (size_t i = 0; i < *len; i++) {
			if (mod == 'L' && value[i] >= 'A' && value[i] <= 'Z')
				value[i] = (char)(value[i] - 'A' + 'a');
			else if (mod == 'U' && value[i] >= 'a' && value[i] <= 'z')
				value[i] = (char)(value[i] - 'a' + 'A');
		}
	}
}

static size_t append_spec(const struct uidl_spec *spec, const struct pop3_uidl_vars *vars,
			  char *out, size_t pos, size_t size)
{
	char value[VALUE_MAX];
	size_t len;

	if (spec->var == VAR_FILENAME) {
		len = MF_MIN(vars->basename_len, (size_t)VALUE_MAX - 24);
		memcpy(value, vars->basename, len);
		apply_mods(spec, value, &len);
	} else if (spec->nmods == 1 && spec->mods[0] == 'X') {
		/* the common case, %08Xu: straight to hex */
		len = format_number(spec->var == VAR_UID ? vars->uid : vars->uid_validity, true, value);
	} else {
		len = format_number(spec->var == VAR_UID ? vars->uid : vars->uid_validity, false, value);
		apply_mods(spec, value, &len);
	}
	if (spec->width > 0 && !spec->zero_pad && len > spec->width)
		len = spec->width;   /* a plain width takes the first width characters */
	for (size_t i = len; spec->zero_pad && i < spec->width && pos < size; i++)
		out[pos++] = '0';
	for (size_t i = 0; i < len && pos < size; i++)
		out[pos++] = value[i];
	return pos;
}

size_t pop3_uidl_expand(const char *format, const struct pop3_uidl_vars *vars,
			char out[POP3_UIDL_MAX + 1])
{
	struct uidl_spec spec;
	size_t pos = 0;

	for (const char *p = format; *p != '\0' && pos < POP3_UIDL_MAX; p++) {
		if (*p != '%') {
			out[pos++] = *p;
		} else if (p[1] == '%') {
			out[pos++] = '%';
			p++;
		} else if (parse_spec(p + 1, &spec) == 0) {
			pos = append_spec(&spec, vars, out, pos, POP3_UIDL_MAX);
			p += spec.len;
		}
	}
	for (size_t i = 0; i < pos; i++) {
		if ((unsigned char)out[i] < 0x21 || (unsigned char)out[i] > 0x7e)
			out[i] = '_';
	}
	if (pos == 0)
		out[pos++] = '_';
	out[pos] = '\0';
	return pos;
}

uint64_t pop3_crlf_size(const unsigned char *data, size_t len)
{
	uint64_t size = len;
	const unsigned char *p = data, *end = data + len;

	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (p == data || p[-1] != '\r')
			size++;
		p++;
	}
	return size;
}

size_t pop3_top_length(const unsigned char *data, size_t len, uint32_t lines)
{
	size_t pos = 0;
	bool in_header = true;

	while (pos < len) {
		const unsigned char *lf = memchr(data + pos, '\n', len - pos);
		size_t next = lf != NULL ? (size_t)(lf - data) + 1 : len;
		size_t line_len = next - pos;
		if (in_header) {
			if (line_len == 1 || (line_len == 2 && data[pos] == '\r'))
				in_header = false;
		} else {
			if (lines == 0)
				return pos;
			lines--;
		}
		pos = next;
	}
	return len;
}

void pop3_msg_stream_init(struct pop3_msg_stream *s, const unsigned char *data, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->data = data;
	s->len = len;
	s->line_start = true;
}

/* Copies one segment up to and including the next LF (or the end), as long
 * as it fits; returns false when out is full. */
static bool stream_segment(struct pop3_msg_stream *s, unsigned char *out, size_t out_max, size_t *w)
{
	const unsigned char *p = s->data + s->pos;
	size_t left = s->len - s->pos;

	if (s->line_start && p[0] == '.') {
		if (*w + 1 > out_max)
			return false;
		out[(*w)++] = '.';
		s->line_start = false;
	}
	const unsigned char *lf = memchr(p, '\n', left);
	size_t n = lf != NULL ? (size_t)(lf - p) : left;
	size_t room = out_max - *w;
	if (lf == NULL ? n > room : n + 2 > room) {
		/* part of a long line: copy what fits, the rest next time */
		size_t k = MF_MIN(n, room);
		memcpy(out + *w, p, k);
		*w += k;
		s->pos += k;
		if (k > 0) {
			s->prev_cr = p[k - 1] == '\r';
			s->line_start = false;
		}
		return false;
	}
	memcpy(out + *w, p, n);
	*w += n;
	s->pos += n;
	bool cr_before = n > 0 ? p[n - 1] == '\r' : s->prev_cr;
	if (lf == NULL) {
		s->prev_cr = cr_before;
		s->line_start = n == 0 && s->line_start;
		return true;
	}
	if (!cr_before)
		out[(*w)++] = '\r';
	out[(*w)++] = '\n';
	s->pos++;
	s->prev_cr = false;
	s->line_start = true;
	return true;
}

bool pop3_msg_stream_run(struct pop3_msg_stream *s, unsigned char *out, size_t out_max,
			 size_t *written_r)
{
	size_t w = 0;

	*written_r = 0;
	if (s->done)
		return true;
	while (s->pos < s->len) {
		if (!stream_segment(s, out, out_max, &w)) {
			*written_r = w;
			return false;
		}
	}
	const char *tail = s->line_start ? ".\r\n" : "\r\n.\r\n";
	size_t tail_len = strlen(tail);
	if (w + tail_len > out_max) {
		*written_r = w;
		return false;
	}
	memcpy(out + w, tail, tail_len);
	*written_r = w + tail_len;
	s->done = true;
	return true;
}
