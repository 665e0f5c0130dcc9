/* fuzz-dirchange.c: libFuzzer target for the directory's change record
 * decoder (journal lines, later cluster messages). A record that decodes
 * must encode and decode again to the same change. */
#include "cluster/directory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool same_str(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool same_change(const struct dir_change *a, const struct dir_change *b)
{
	return a->type == b->type && same_str(a->name, b->name) &&
		same_str(a->value, b->value) && a->number == b->number &&
		a->imap_enabled == b->imap_enabled && a->pop3_enabled == b->pop3_enabled;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dir_change ch, again;
	char *storage, *storage2, *line;
	const char *error;

	if (dir_change_decode((const char *)data, size, &ch, &storage, &error) < 0) {
		if (error == NULL || storage != NULL)
			abort();
		return 0;
	}
	/* decoding accepts only canonical numbers and escapes, so the encoding
	 * is the input again (less a trailing newline) and fits the limit */
	line = dir_change_encode(&ch);
	if (line == NULL || strlen(line) != size - (data[size - 1] == '\n') ||
	    memcmp(line, data, strlen(line)) != 0)
		abort();
	if (dir_change_decode(line, strlen(line), &again, &storage2, &error) < 0 ||
	    !same_change(&ch, &again)) {
		fprintf(stderr, "round trip failed for %s\n", line);
		abort();
	}
	free(storage2);
	free(line);
	free(storage);
	return 0;
}
