/* nasbench-util.c: small helpers shared by the mailfleet-nasbench checks:
 * scratch-relative paths, error texts, the fatal-error latch, pseudo-random
 * data and latency percentiles. */
#include "store/nasbench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

bool nb_fatal_check(struct nb_ctx *ctx, int err, const char *what)
{
	const char *why;

	switch (err) {
	case ENOSPC: why = "no space left on the target"; break;
	case EDQUOT: why = "disk quota exceeded on the target"; break;
	case EROFS: why = "the target is read-only"; break;
	default: return false;
	}
	char *msg = mf_asprintf("%s (%s: %s)", why, what, strerror(err));
	nb_fatal_set(ctx, msg);
	free(msg);
	return true;
}

void nb_fatal_set(struct nb_ctx *ctx, const char *msg)
{
	pthread_mutex_lock(&ctx->fatal_lock);
	if (ctx->fatal == NULL) {
		ctx->fatal = mf_strdup(msg);
		atomic_store(&ctx->fatal_set, true);
	}
	pthread_mutex_unlock(&ctx->fatal_lock);
}

char *nb_path(const struct nb_ctx *ctx, const char *rel_fmt, ...)
{
	va_list ap;
	char *rel, *path;

	va_start(ap, rel_fmt);
	if (vasprintf(&rel, rel_fmt, ap) < 0)
		abort();
	va_end(ap);
	path = rel[0] == '\0' ? mf_strdup(ctx->scratch) : mf_asprintf("%s/%s", ctx->scratch, rel);
	free(rel);
	return path;
}

char *nb_errstr(const char *what, int err)
{
	return mf_asprintf("%s: %s", what, strerror(err));
}

void nb_fill_random(void *buf, size_t len, uint64_t seed)
{
	uint64_t state = seed | 1;
	unsigned char *p = buf;

	while (len >= 8) {
		uint64_t r = nb_rand(&state);
		memcpy(p, &r, 8);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		*p++ = (unsigned char)nb_rand(&state);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y ? 1 : 0;
}

/* Nearest-rank percentile on sorted samples. */
static double percentile_ms(const uint32_t *sorted, size_t n, double pct)
{
	size_t rank = (size_t)((pct / 100.0) * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1] / 1000.0;
}

void nb_lat_compute(uint32_t *samples_us, size_t n, struct nb_lat *lat_r)
{
	memset(lat_r, 0, sizeof(*lat_r));
	lat_r->count = n;
	if (n == 0)
		return;
	qsort(samples_us, n, sizeof(*samples_us), cmp_u32);
	lat_r->p50_ms = percentile_ms(samples_us, n, 50);
	lat_r->p99_ms = percentile_ms(samples_us, n, 99);
	lat_r->max_ms = samples_us[n - 1] / 1000.0;
}
