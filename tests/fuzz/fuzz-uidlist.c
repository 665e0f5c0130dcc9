/* fuzz-uidlist.c: libFuzzer target for the dovecot-uidlist v3 parser in
 * store/uidlist.c. Whatever parses must serialize to text that parses again
 * to the same serialization (the serializer's output is canonical). */
#include "store/uidlist.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uidlist *ul, *again;
	unsigned line;
	const char *error = NULL;
	size_t len, len2;

	if (uidlist_parse((const char *)data, size, &ul, &line, &error) < 0) {
		if (error == NULL || ul != NULL || line == 0)
			abort();
		return 0;
	}
	char *text = uidlist_serialize(ul, &len);
	if (uidlist_parse(text, len, &again, &line, &error) < 0)
		abort();
	char *text2 = uidlist_serialize(again, &len2);
	if (len != len2 || memcmp(text, text2, len) != 0 || again->count != ul->count ||
	    again->next_uid != ul->next_uid || again->uid_validity != ul->uid_validity)
		abort();
	for (size_t i = 0; i < ul->count; i++) {
		if (uidlist_lookup(ul, ul->recs[i].filename) == NULL)
			abort();
	}
	free(text);
	free(text2);
	uidlist_free(&ul);
	uidlist_free(&again);
	return 0;
}
