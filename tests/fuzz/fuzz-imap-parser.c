/* fuzz-imap-parser.c: libFuzzer target for the IMAP command parser. The
 * first bytes choose limits, the literal decision and the chunk size; the
 * rest is fed once whole and once in chunks, and the two event transcripts
 * must agree. Atoms also go through the sequence-set and modified UTF-7
 * parsers (whose round trip must hold); a literal8 must never read as a
 * string. */
#include "imapd/imap-parser.h"
#include "imapd/imap-utf7.h"
#include "lib/buf.h"

#include <stdlib.h>
#include <string.h>

static void walk_args(const struct imap_arg *args, struct buf *out)
{
	for (const struct imap_arg *a = args; a->type != IMAP_ARG_EOL; a++) {
		const char *s;
		buf_printf(out, "%d:%zu:", (int)a->type, a->len);
		if (a->type == IMAP_ARG_LIST) {
			buf_append(out, "(", 1);
			walk_args(a->list, out);
			buf_append(out, ")", 1);
			continue;
		}
		buf_append(out, a->str, a->type == IMAP_ARG_LITERAL_STREAMED ? 0 : a->len);
		/* a literal8 is APPEND's message only, never a string */
		if (a->literal8 && (imap_arg_get_astring(a, &s) || imap_arg_get_nstring(a, &s)))
			abort();
		if (imap_arg_get_astring(a, &s)) {
			struct imap_seq_range *r;
			size_t n;
			const char *err;
			struct buf u8, u7;
			if (imap_seqset_parse(s, 100, &r, &n, &err) == 0) {
				imap_seqset_resolve(r, &n, 1000);
				(void)imap_seqset_contains(r, n, 500);
				free(r);
			}
			buf_init(&u8, 0);
			buf_init(&u7, 0);
			if (imap_utf7_to_utf8(s, &u8) == 0) {
				buf_append(&u8, "", 1);
				if (imap_utf8_to_utf7((const char *)u8.data, &u7) < 0 ||
				    u7.len != strlen(s) || (u7.len > 0 && memcmp(u7.data, s, u7.len) != 0))
					abort();
			}
			buf_free(&u8);
			buf_free(&u7);
		}
	}
}

static void transcript(const uint8_t *data, size_t size, size_t step, uint8_t mode,
		       struct buf *out)
{
	struct imap_parser_limits limits = {
		.line_max = 64 + (mode & 0x7) * 512, .literal_max = 16 + (mode & 0x18) * 64,
		.stream_min = (mode & 0x20) ? 1 : 0, .nesting_max = 1 + (mode & 0x7),
		.arg_max = 8 + (mode & 0x38), .nonsync_max = (mode & 0x40) ? 100 : 0,
	};
	struct imap_parser *p = imap_parser_create(&limits);
	size_t pos = 0;
	int events = 0;

	while (pos < size && events < 100000) {
		size_t piece = MF_MIN(step, size - pos), used;
		enum imap_parse_result r = imap_parser_parse(p, data + pos, piece, &used);
		const struct imap_command *cmd;
		const void *chunk;
		size_t clen;
		bool last, fatal;

		pos += used;
		events++;
		switch (r) {
		case IMAP_PARSE_NEED_MORE:
			if (used == 0 && piece == 0)
				pos = size;
			break;
		case IMAP_PARSE_COMMAND:
			cmd = imap_parser_command(p);
			buf_printf(out, "C%s %s[", cmd->tag, cmd->name);
			walk_args(cmd->args, out);
			buf_append(out, "]", 1);
			/* a command naming IDLE switches to raw-line mode */
			if (strcmp(cmd->name, "IDLE") == 0)
				imap_parser_read_line(p);
			break;
		case IMAP_PARSE_CONTINUATION:
			buf_append(out, "+", 1);
			break;
		case IMAP_PARSE_LITERAL:
			cmd = imap_parser_command(p);
			buf_printf(out, "L%llu", (unsigned long long)imap_parser_literal_info(p)->size);
			if (cmd != NULL)
				walk_args(cmd->args, out);
			const char *err;
			if ((mode & 0x80) ? imap_parser_literal_stream(p, &err) < 0 :
			    imap_parser_literal_accept(p, &err) < 0)
				buf_append(out, "R", 1);
			break;
		case IMAP_PARSE_LITERAL_DATA:
			imap_parser_literal_chunk(p, &chunk, &clen, &last);
			buf_printf(out, "D%zu%s", clen, last ? "!" : "");
			break;
		case IMAP_PARSE_LINE:
			buf_printf(out, "N%s", imap_parser_line(p, &clen));
			break;
		case IMAP_PARSE_ERROR:
			buf_printf(out, "E%s", imap_parser_error(p, NULL, &fatal));
			if (fatal)
				pos = size;
			break;
		}
	}
	imap_parser_destroy(&p);
}

/* Streamed chunk sizes depend on the feeding; only their sum is compared. */
static void normalise(struct buf *b)
{
	size_t w = 0;

	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] == 'D' && i + 1 < b->len && b->data[i + 1] >= '0' &&
		    b->data[i + 1] <= '9') {
			i++;
			while (i < b->len && b->data[i] >= '0' && b->data[i] <= '9')
				i++;
			if (i < b->len && b->data[i] == '!')
				b->data[w++] = '!';
			else
				i--;
			continue;
		}
		b->data[w++] = b->data[i];
	}
	b->len = w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b;
	uint8_t mode, step;

	if (size < 2)
		return 0;
	mode = data[0];
	step = (uint8_t)(data[1] % 16 + 1);
	data += 2;
	size -= 2;
	buf_init(&a, 0);
	buf_init(&b, 0);
	transcript(data, size, size, mode, &a);
	transcript(data, size, step, mode, &b);
	normalise(&a);
	normalise(&b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0))
		abort();
	buf_free(&a);
	buf_free(&b);
	return 0;
}
