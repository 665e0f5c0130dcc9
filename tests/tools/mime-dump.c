/* mime-dump.c: prints the IMAP BODYSTRUCTURE, BODY and ENVELOPE of a
 * message file as mailfleet computes them, for building and checking the
 * tests/data/mime corpus by hand. Usage: mime-dump [-lf] [-only WHAT] FILE
 * (-lf: the file is stored with LF endings, sizes counted as CRLF;
 * -only bodystructure|body|envelope: print just that, no newline). */
#include "imapd/imap-bodystructure.h"
#include "imapd/imap-envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path, size_t *size_r)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char tmp[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b, 0);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	buf_append(&b, "", 1);
	*size_r = b.len - 1;
	return (char *)b.data;
}

int main(int argc, char **argv)
{
	unsigned int flags = 0;
	struct mime_message *msg;
	struct buf out;
	size_t size;
	char *data;
	const char *only = NULL;

	if (argc > 1 && strcmp(argv[1], "-lf") == 0) {
		flags = MIME_PARSE_LF_TO_CRLF;
		argv++;
		argc--;
	}
	if (argc > 2 && strcmp(argv[1], "-only") == 0) {
		only = argv[2];
		argv += 2;
		argc -= 2;
	}
	if (argc != 2 || (data = read_file(argv[1], &size)) == NULL) {
		fprintf(stderr, "usage: mime-dump [-lf] FILE\n");
		return 2;
	}
	msg = mime_parse(data, size, NULL, flags);
	buf_init(&out, 0);
	if (only != NULL) {
		if (strcmp(only, "envelope") == 0)
			imap_envelope_write(msg, msg->root, 0, &out);
		else
			imap_bodystructure_write(msg, msg->root,
						 strcmp(only, "body") != 0, 0, &out);
		goto done;
	}
	imap_bodystructure_write(msg, msg->root, true, 0, &out);
	buf_append(&out, "\n", 1);
	imap_bodystructure_write(msg, msg->root, false, 0, &out);
	buf_append(&out, "\n", 1);
	imap_envelope_write(msg, msg->root, 0, &out);
	buf_printf(&out, "\nsize %llu\n", (unsigned long long)(msg->root->header.virtual +
							     msg->root->body.virtual));
done:
	fwrite(out.data, 1, out.len, stdout);
	buf_free(&out);
	mime_message_free(&msg);
	free(data);
	return 0;
}
