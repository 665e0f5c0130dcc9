/* store-read.c: message reads sized by fstat (see store-read.h). A file that
 * turns out longer than its fstat size (it should not: maildir files never
 * change) is read to its end all the same. */
#include "store/store-read.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LZ4_MAGIC_0 0x04
#define LZ4_MAGIC_1 0x22
#define LZ4_MAGIC_2 0x4d
#define LZ4_MAGIC_3 0x18

static bool looks_lz4(const unsigned char *d, size_t len)
{
	return len >= 4 && d[0] == LZ4_MAGIC_0 && d[1] == LZ4_MAGIC_1 && d[2] == LZ4_MAGIC_2 &&
		d[3] == LZ4_MAGIC_3;
}

static int read_whole(struct io_file *file, size_t size_hint, size_t max_size,
		      unsigned char **data_r, size_t *len_r)
{
	size_t cap = size_hint + 1, len = 0;
	unsigned char *data = mf_malloc(cap + 1);

	for (;;) {
		ssize_t n = io_pread(file, data + len, cap - len, len);
		if (n < 0) {
			free(data);
			return -1;
		}
		len += (size_t)n;
		if (n == 0 || len < cap)
			break;    /* a short read of a regular file: its end */
		if (len > max_size + 1) {
			free(data);
			errno = EFBIG;
			return -1;
		}
		cap *= 2;
		data = mf_realloc(data, cap + 1);
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

int store_read_file_sized(struct mf_io *io, const char *path, size_t max_size,
			  unsigned char **data_r, size_t *len_r)
{
	struct io_file *file;
	struct io_stat st;

	*data_r = NULL;
	*len_r = 0;
	if (io_open(io, path, IO_O_RDONLY, 0, &file) < 0)
		return -1;
	int ret = io_fstat(file, &st);
	if (ret == 0 && st.size > max_size) {
		errno = EFBIG;
		ret = -1;
	}
	if (ret == 0)
		ret = read_whole(file, (size_t)st.size, max_size, data_r, len_r);
	int err = errno;
	io_close(&file);
	if (ret == 0 && *len_r > max_size) {
		mf_free(data_r);
		err = EFBIG;
		ret = -1;
	}
	errno = err;
	return ret;
}

int store_read_message_fast(struct store *store, const char *path, size_t max_size,
			    unsigned char **data_r, size_t *len_r)
{
	/* room for a compressed file of an incompressible max_size message */
	size_t raw_max = max_size + max_size / 255 + 1024;

	if (store_read_file_sized(store_io(store), path, raw_max, data_r, len_r) < 0)
		return -1;
	if (looks_lz4(*data_r, *len_r)) {
		mf_free(data_r);
		return store_read_message(store, path, max_size, data_r, len_r);
	}
	if (*len_r > max_size) {
		mf_free(data_r);
		errno = EFBIG;
		return -1;
	}
	return 0;
}
