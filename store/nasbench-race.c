/* nasbench-race.c: the two functional checks that need concurrency. Atomic
 * rename: a reader keeps opening a file that a writer keeps replacing by
 * rename; it must always find a complete version, never ENOENT (ESTALE is
 * NFS's way of saying "replaced under you": retried, as the store does).
 * Exclusive create: two threads (two NFS connections with libnfs, like two
 * nodes) create the same name with O_CREAT|O_EXCL; exactly one may win. */
#include "store/nasbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>

#define VERSION_SIZE 4096

struct rename_race {
	struct nb_ctx *ctx;
	char *target;
	atomic_bool writer_done;
	atomic_uint reads;
	atomic_uint attempts; /* the writer waits for the reader's first one */
	unsigned enoent, torn, estale, other_errors;
	int other_errno;
};

/* A version: "v=<n>\n" then filler derived from n, so a torn read shows. */
static void make_version(char *buf, unsigned n)
{
	int len = snprintf(buf, VERSION_SIZE, "v=%u\n", n);
	for (size_t i = (size_t)len; i < VERSION_SIZE; i++)
		buf[i] = (char)('a' + (n + i) % 26);
}

static bool version_ok(const char *data, size_t len)
{
	char want[VERSION_SIZE];
	unsigned n;

	if (len != VERSION_SIZE || sscanf(data, "v=%u\n", &n) != 1)
		return false;
	make_version(want, n);
	return memcmp(want, data, VERSION_SIZE) == 0;
}

static void read_once(struct rename_race *rr)
{
	char *data;
	size_t len;

	for (int attempt = 0; attempt < 10; attempt++) {
		if (io_read_file(rr->ctx->io, rr->target, VERSION_SIZE * 2, &data, &len) == 0) {
			atomic_fetch_add(&rr->reads, 1);
			if (!version_ok(data, len))
				rr->torn++;
			free(data);
			return;
		}
		/* libnfs 4.0 reports a READ on a replaced file's handle as EFAULT. */
		if (errno != ESTALE && !(errno == EFAULT && rr->ctx->is_nfs))
			break;
		rr->estale++;
	}
	if (errno == ENOENT) {
		rr->enoent++;
	} else {
		rr->other_errors++;
		rr->other_errno = errno;
	}
}

static void *reader_thread(void *arg)
{
	struct rename_race *rr = arg;

	while (!atomic_load(&rr->writer_done) && !nb_stopping(rr->ctx)) {
		read_once(rr);
		atomic_fetch_add(&rr->attempts, 1);
	}
	return NULL;
}

static int write_version(struct nb_ctx *ctx, const char *path, unsigned n)
{
	char buf[VERSION_SIZE];
	struct io_file *f;

	make_version(buf, n);
	if (io_open(ctx->io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0644, &f) < 0)
		return -1;
	int ret = io_write_all(f, buf, sizeof(buf));
	int err = errno;
	if (io_close(&f) < 0 && ret == 0)
		ret = -1, err = errno;
	errno = err;
	return ret;
}

static int rename_rounds(struct rename_race *rr, const char *tmp, const char **what_r)
{
	/* A fast target could finish every round before the reader starts. */
	while (atomic_load(&rr->attempts) == 0 && !nb_stopping(rr->ctx))
		sched_yield();
	for (unsigned i = 1; i <= rr->ctx->opt.rename_rounds && !nb_stopping(rr->ctx); i++) {
		*what_r = "write";
		if (write_version(rr->ctx, tmp, i) < 0)
			return -1;
		*what_r = "rename over";
		if (io_rename(rr->ctx->io, tmp, rr->target) < 0)
			return -1;
	}
	return 0;
}

static void report_rename(struct rename_race *rr, int ret, int err, const char *what)
{
	struct nb_ctx *ctx = rr->ctx;
	unsigned reads = atomic_load(&rr->reads);
	const char *name = "func.rename-atomic";
	const char *thr = "no ENOENT, no torn read";

	if (ret < 0) {
		char *note = nb_errstr(what, err);
		nb_fatal_check(ctx, err, what);
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, thr, note, "error");
		free(note);
	} else if (rr->enoent > 0 || rr->torn > 0 || reads == 0) {
		nb_report_add(ctx->report, name, NB_FAIL, (double)(rr->enoent + rr->torn), NULL, thr,
			      "rename over an existing file must replace it atomically: readers "
			      "must see the old or the new file, never none or a mix",
			      "%u reads: %u ENOENT, %u torn", reads, rr->enoent, rr->torn);
	} else if (rr->other_errors > 0) {
		char *note = nb_errstr("reader", rr->other_errno);
		nb_report_add(ctx->report, name, NB_WARN, (double)rr->other_errors, NULL, thr, note,
			      "%u reads, %u errors", reads, rr->other_errors);
		free(note);
	} else {
		nb_report_add(ctx->report, name, NB_PASS, 0, NULL, thr,
			      rr->estale > 0 ? "ESTALE seen while a file was replaced: retried "
			      "from the name, as the store does" : NULL,
			      "%u renames, %u reads ok, %u ESTALE retried", ctx->opt.rename_rounds,
			      reads, rr->estale);
	}
}

void nb_check_rename_atomic(struct nb_ctx *ctx)
{
	struct rename_race rr = { .ctx = ctx };
	char *tmp = nb_path(ctx, "f-rename.tmp");
	const char *what = "create";
	pthread_t reader;
	int ret, err = 0;

	rr.target = nb_path(ctx, "f-rename");
	atomic_init(&rr.writer_done, false);
	atomic_init(&rr.reads, 0);
	atomic_init(&rr.attempts, 0);
	ret = write_version(ctx, rr.target, 0);
	if (ret < 0) {
		err = errno;
	} else {
		pthread_create(&reader, NULL, reader_thread, &rr);
		ret = rename_rounds(&rr, tmp, &what);
		err = errno;
		atomic_store(&rr.writer_done, true);
		pthread_join(reader, NULL);
	}
	if (!atomic_load(ctx->stop))
		report_rename(&rr, ret, err, what);
	free(tmp);
	free(rr.target);
}

/* --- exclusive create --- */

struct excl_race {
	struct nb_ctx *ctx;
	pthread_barrier_t barrier;
	char *path;
	unsigned rounds;
	atomic_bool abort;
	int result[2];   /* per round: 0 won, else errno */
};

struct excl_thread {
	struct excl_race *race;
	int id;
	unsigned wins_both, wins_none, errors;
};

static void *excl_thread_main(void *arg)
{
	struct excl_thread *t = arg;
	struct excl_race *race = t->race;
	struct io_file *f;

	for (unsigned i = 0; i < race->rounds; i++) {
		pthread_barrier_wait(&race->barrier);       /* both ready */
		if (atomic_load(&race->abort))
			break;
		int ret = io_open(race->ctx->io, race->path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL,
				  0600, &f);
		race->result[t->id] = ret == 0 ? 0 : errno;
		if (ret == 0)
			io_close(&f);
		pthread_barrier_wait(&race->barrier);       /* both done */
		if (t->id == 0) {
			/* only thread 0 judges and resets, between the barriers */
			int wins = (race->result[0] == 0) + (race->result[1] == 0);
			bool bad_err = (race->result[0] != 0 && race->result[0] != EEXIST) ||
				       (race->result[1] != 0 && race->result[1] != EEXIST);
			t->wins_both += wins == 2;
			t->wins_none += wins == 0;
			t->errors += bad_err;
			if (io_unlink(race->ctx->io, race->path) < 0 || bad_err || nb_stopping(race->ctx))
				atomic_store(&race->abort, true);
		}
		pthread_barrier_wait(&race->barrier);       /* reset done */
	}
	return NULL;
}

void nb_check_exclusive_create(struct nb_ctx *ctx)
{
	struct excl_race race = { .ctx = ctx, .rounds = ctx->opt.race_rounds };
	struct excl_thread t[2] = { { .race = &race, .id = 0 }, { .race = &race, .id = 1 } };
	pthread_t th[2];
	const char *name = "func.exclusive-create";

	race.path = nb_path(ctx, "f-excl.lock");
	atomic_init(&race.abort, false);
	pthread_barrier_init(&race.barrier, NULL, 2);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, excl_thread_main, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&race.barrier);

	if (atomic_load(ctx->stop)) {
		/* interrupted: no row */
	} else if (t[0].errors > 0) {
		int err = race.result[0] != 0 && race.result[0] != EEXIST ? race.result[0] : race.result[1];
		char *note = nb_errstr("exclusive create", err);
		nb_fatal_check(ctx, err, "exclusive create");
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "exactly one wins", note, "error");
		free(note);
	} else if (t[0].wins_both > 0 || t[0].wins_none > 0) {
		nb_report_add(ctx->report, name, NB_FAIL, (double)t[0].wins_both, NULL, "exactly one wins",
			      "O_EXCL is not atomic on this NAS: two nodes can both take a lock file",
			      "%u rounds: %u both won, %u none won", race.rounds, t[0].wins_both,
			      t[0].wins_none);
	} else {
		nb_report_add(ctx->report, name, NB_PASS, 0, NULL, "exactly one wins", NULL,
			      "%u rounds, one winner each", race.rounds);
	}
	free(race.path);
}
