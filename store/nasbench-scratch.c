/* nasbench-scratch.c: the scratch directory mailfleet-nasbench works in. It
 * is created inside the target, an existing non-empty one is refused (it
 * could be someone's data), and at the end everything in it is removed,
 * through io.h like every other access. */
#include "store/nasbench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int count_cb(void *ctx, const char *name)
{
	(void)name;
	(*(unsigned *)ctx)++;
	return 1;
}

int nb_scratch_create(struct nb_ctx *ctx, const char **error_r)
{
	char host[256];
	unsigned entries = 0;

	if (ctx->scratch == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		for (char *p = host; *p != '\0'; p++) {
			if (*p == '/' || *p == '.')
				*p = *p == '.' ? '_' : '-';
		}
		ctx->scratch = mf_asprintf("mailfleet-nasbench.%s.%ld", host, (long)getpid());
	}
	if (io_mkdir(ctx->io, ctx->scratch, 0755) == 0)
		return 0;
	int err = errno;
	if (err != EEXIST) {
		*error_r = "cannot create the scratch directory";
	} else if (io_readdir(ctx->io, ctx->scratch, count_cb, &entries) < 0) {
		err = errno;
		*error_r = "cannot list the existing scratch directory";
	} else if (entries > 0) {
		*error_r = "the scratch directory exists and is not empty; refusing to use it";
		err = ENOTEMPTY;
	} else {
		return 0;
	}
	/* Not ours: cleanup must never touch it. */
	mf_free(&ctx->scratch);
	errno = err;
	return -1;
}

struct name_list {
	char **names;
	size_t count, cap;
};

static int collect_cb(void *ctx, const char *name)
{
	struct name_list *list = ctx;

	if (list->count == list->cap) {
		list->cap = list->cap == 0 ? 64 : list->cap * 2;
		list->names = mf_realloc(list->names, list->cap * sizeof(char *));
	}
	list->names[list->count++] = mf_strdup(name);
	return 0;
}

struct remover {
	pthread_t thread;
	struct mf_io *io;
	const char *dir;
	struct name_list *list;
	size_t first, step;
	int err;
};

static void *remover_main(void *arg)
{
	struct remover *r = arg;

	for (size_t i = r->first; i < r->list->count; i += r->step) {
		char *child = mf_asprintf("%s/%s", r->dir, r->list->names[i]);
		/* unlink first: nearly everything is a file */
		if (io_unlink(r->io, child) < 0 && errno != ENOENT &&
		    nb_remove_tree(r->io, child) < 0 && errno != ENOENT)
			r->err = errno;
		free(child);
	}
	return NULL;
}

/* Lists first, removes after: removing while listing can skip entries on
 * NFS. Big folders are emptied by several threads: on a NAS every unlink is
 * a round trip, and a 10,000-entry folder would take minutes one by one. */
static int remove_children(struct mf_io *io, const char *rel)
{
	enum { THREADS = 8, THREADED_FROM = 16 };
	struct name_list list = { 0 };
	struct remover r[THREADS];
	size_t n;
	int err = 0;

	if (io_readdir(io, rel, collect_cb, &list) < 0)
		err = errno;
	n = list.count >= THREADED_FROM ? THREADS : 1;
	for (size_t i = 0; i < n; i++) {
		r[i] = (struct remover){ .io = io, .dir = rel, .list = &list, .first = i, .step = n };
		if (n == 1)
			remover_main(&r[i]);
		else
			pthread_create(&r[i].thread, NULL, remover_main, &r[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (n > 1)
			pthread_join(r[i].thread, NULL);
		if (r[i].err != 0)
			err = r[i].err;
	}
	for (size_t i = 0; i < list.count; i++)
		free(list.names[i]);
	free(list.names);
	errno = err;
	return err != 0 ? -1 : 0;
}

int nb_remove_tree(struct mf_io *io, const char *rel)
{
	struct io_stat st;

	if (io_stat(io, rel, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if ((st.mode & 0170000) != 0040000)
		return io_unlink(io, rel) < 0 && errno != ENOENT ? -1 : 0;
	/* A directory made read-only by a check must become writable to empty it. */
	if ((st.mode & 0700) != 0700)
		(void)io_chmod(io, rel, 0700);
	int ret = remove_children(io, rel);
	if (io_rmdir(io, rel) < 0 && errno != ENOENT)
		return -1;
	return ret;
}

int nb_scratch_remove(struct nb_ctx *ctx, char **left_r)
{
	struct io_stat st;

	*left_r = NULL;
	if (ctx->scratch == NULL)
		return 0;
	/* Up to three passes: a readdir racing with nothing should need one. */
	for (int pass = 0; pass < 3; pass++) {
		if (nb_remove_tree(ctx->io, ctx->scratch) == 0 &&
		    io_stat(ctx->io, ctx->scratch, &st) < 0 && errno == ENOENT)
			return 0;
	}
	*left_r = mf_strdup(ctx->scratch);
	return -1;
}
