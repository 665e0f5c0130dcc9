/* store-read.h: reading message files with as few calls as possible: one
 * open, one fstat, one read of the whole file, one close; lz4-compressed
 * files (detected by their magic) are handed to store_read_message(). */
#ifndef MF_STORE_READ_H
#define MF_STORE_READ_H

#include "store/store.h"

/* As store_read_message(): *data_r (malloc()ed, NUL-terminated) holds the
 * message with lz4 undone; EFBIG when larger than max_size. */
int store_read_message_fast(struct store *store, const char *path, size_t max_size,
			    unsigned char **data_r, size_t *len_r);

/* As io_read_file(), with one read sized by fstat: *data_r (malloc()ed,
 * NUL-terminated); EFBIG when larger than max_size. */
int store_read_file_sized(struct mf_io *io, const char *path, size_t max_size,
			  unsigned char **data_r, size_t *len_r);

#endif
