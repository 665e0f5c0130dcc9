/* fuzz-mailbox-cache.c: libFuzzer target for the cache entry decoder in
 * store/mailbox-cache.c (entries come from a file on the NAS that anything
 * may have damaged). A decoded entry's fields must lie inside the input,
 * one after another; an input cut short anywhere must not decode. */
#include "store/mailbox-cache.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailbox_cache_entry e;
	uint32_t uid = size >= 8 ? (uint32_t)data[4] | (uint32_t)data[5] << 8 |
		(uint32_t)data[6] << 16 | (uint32_t)data[7] << 24 : 1;

	if (mailbox_cache_entry_parse(data, size, uid, &e) != 1)
		return 0;
	const char *prev_end = (const char *)data + 16;
	for (int f = 0; f < MAILBOX_CACHE_FIELD_COUNT; f++) {
		if (e.data[f] != prev_end + 4 || e.data[f] + e.len[f] > (const char *)data + size)
			abort();
		prev_end = e.data[f] + e.len[f];
	}
	size_t used = (size_t)(prev_end - (const char *)data);
	struct mailbox_cache_entry e2;
	if (used > 16 && mailbox_cache_entry_parse(data, used - 1, uid, &e2) == 1)
		abort();
	if (mailbox_cache_entry_parse(data, size, uid + 1, &e2) != -1)
		abort();
	return 0;
}
