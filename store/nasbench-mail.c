/* nasbench-mail.c: the mail workload of mailfleet-nasbench. Worker threads
 * do what a mail store does to its NAS: maildir deliveries (create in tmp/,
 * write 4-64 KB, fsync, rename into new/, make new/ durable), flag renames
 * within cur/, listings of a 10,000-entry folder, random message reads and
 * unlinks, with reads about twice the writes. Each concurrency level runs for
 * a fixed time and adds one row per operation (ops/s, p50, p99) and one row
 * for the level (operations/s and file-system calls/s). */
#include "store/nasbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum mail_op { OP_DELIVER, OP_FLAG, OP_READ, OP_READDIR, OP_UNLINK, OP_COUNT };

static const char *const op_names[OP_COUNT] = { "deliver", "flag", "read", "readdir", "unlink" };
static const enum nb_thr op_thr[OP_COUNT] = {
	NB_THR_DELIVER_P99_MS, NB_THR_FLAG_P99_MS, NB_THR_READ_P99_MS,
	NB_THR_READDIR_P99_MS, NB_THR_UNLINK_P99_MS,
};
/* Out of 100 operations: writes 34 (deliver, flag, unlink), reads 66. */
static const unsigned op_weight[OP_COUNT] = { 14, 6, 62, 4, 14 };

#define MSG_MIN 4096
#define MSG_MAX 65536
#define DELIVERED_MAX 32       /* per worker; older deliveries are unlinked */
#define SAMPLES_MAX (1u << 20) /* per worker and operation */
#define DATA_SIZE (2 * MSG_MAX)

struct mail_run {
	struct nb_ctx *ctx;
	char *tmp_dir, *new_dir, *cur_dir, *big_dir;
	uint32_t *pool_size;       /* size of each pool message in cur/ */
	bool *pool_flagged;        /* its current name ends ":2,S" */
	unsigned char *data;       /* random message bytes */
	unsigned level;
	pthread_barrier_t start;
	atomic_uint_fast64_t deadline; /* set by main between the two start barriers */
};

struct samples {
	uint32_t *us;
	size_t count, cap;
};

struct mail_worker {
	struct mail_run *run;
	pthread_t thread;
	unsigned id;
	uint64_t rng;
	unsigned seq;
	char *delivered[DELIVERED_MAX];
	unsigned dl_head, dl_count;
	struct samples samples[OP_COUNT];
	uint64_t calls;
	uint64_t readdir_short;
	const char *err_what;
	int err;
};

static void sample_add(struct samples *s, uint64_t us)
{
	if (s->count == s->cap) {
		if (s->cap >= SAMPLES_MAX)
			return;
		s->cap = s->cap == 0 ? 1024 : s->cap * 2;
		s->us = mf_realloc(s->us, s->cap * sizeof(*s->us));
	}
	s->us[s->count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static char *pool_name(struct mail_run *run, unsigned i, bool flagged)
{
	return mf_asprintf("%s/pool%u.nasbench,S=%u:2,%s", run->cur_dir, i, run->pool_size[i],
			   flagged ? "S" : "");
}

/* --- the operations; each returns -1 with errno and w->err_what --- */

static int op_deliver(struct mail_worker *w)
{
	struct mail_run *run = w->run;
	uint32_t size = MSG_MIN + (uint32_t)(nb_rand(&w->rng) % (MSG_MAX - MSG_MIN + 1));
	size_t off = (size_t)(nb_rand(&w->rng) % (DATA_SIZE - size));
	char *base = mf_asprintf("%llu.M%uP%ldQ%u.nasbench,S=%u", (unsigned long long)mf_now_us(),
				 w->id, (long)getpid(), w->seq++, size);
	char *tmp = mf_asprintf("%s/%s", run->tmp_dir, base), *dst = NULL;
	struct io_file *f;
	int ret = -1;

	w->err_what = "deliver: create in tmp/";
	if (io_open(run->ctx->io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &f) < 0)
		goto out;
	w->err_what = "deliver: write";
	ret = io_write_all(f, run->data + off, size);
	if (ret == 0 && (w->err_what = "deliver: fsync", ret = io_fsync(f)) == 0)
		w->err_what = "deliver: close";
	int err = errno;
	if (io_close(&f) < 0 && ret == 0)
		ret = -1, err = errno;
	errno = err;
	if (ret < 0)
		goto out;
	dst = mf_asprintf("%s/%s", run->new_dir, base);
	w->err_what = "deliver: rename into new/";
	if ((ret = io_rename(run->ctx->io, tmp, dst)) < 0)
		goto out;
	w->err_what = "deliver: fsync new/";
	if ((ret = io_fsync_dir(run->ctx->io, run->new_dir)) < 0)
		goto out;
	w->calls += 5;
	unsigned slot = (w->dl_head + w->dl_count) % DELIVERED_MAX;
	w->delivered[slot] = dst;
	w->dl_count++;
	dst = NULL;
out:
	free(base);
	free(tmp);
	free(dst);
	return ret;
}

static int op_unlink(struct mail_worker *w)
{
	char *path = w->delivered[w->dl_head];

	w->delivered[w->dl_head] = NULL;
	w->dl_head = (w->dl_head + 1) % DELIVERED_MAX;
	w->dl_count--;
	w->err_what = "unlink";
	int ret = io_unlink(w->run->ctx->io, path);
	free(path);
	w->calls++;
	return ret;
}

/* Pool messages are split among workers, so a worker's renames never race
 * with another worker's reads of the same message. */
static unsigned pick_pool(struct mail_worker *w)
{
	unsigned n = w->run->ctx->opt.pool_messages, level = w->run->level;
	unsigned mine = n / level + (w->id < n % level ? 1 : 0);
	return w->id + level * (unsigned)(nb_rand(&w->rng) % mine);
}

static int op_flag(struct mail_worker *w)
{
	struct mail_run *run = w->run;
	unsigned i = pick_pool(w);
	char *from = pool_name(run, i, run->pool_flagged[i]);
	char *to = pool_name(run, i, !run->pool_flagged[i]);

	w->err_what = "flag rename in cur/";
	int ret = io_rename(run->ctx->io, from, to);
	if (ret == 0)
		run->pool_flagged[i] = !run->pool_flagged[i];
	w->calls++;
	free(from);
	free(to);
	return ret;
}

static int op_read(struct mail_worker *w, unsigned char *buf)
{
	struct mail_run *run = w->run;
	unsigned i = pick_pool(w);
	char *path = pool_name(run, i, run->pool_flagged[i]);
	struct io_file *f;
	uint64_t off = 0;
	ssize_t ret;

	w->err_what = "read a message";
	if (io_open(run->ctx->io, path, IO_O_RDONLY, 0, &f) < 0) {
		free(path);
		return -1;
	}
	w->calls++;
	do {
		ret = io_pread(f, buf, MSG_MAX, off);
		w->calls++;
		off += ret > 0 ? (uint64_t)ret : 0;
	} while (ret == MSG_MAX);
	int err = errno;
	io_close(&f);
	free(path);
	if (ret >= 0 && off != run->pool_size[i]) {
		w->err_what = "read a message: short read";
		err = EIO;
		ret = -1;
	}
	errno = err;
	return ret < 0 ? -1 : 0;
}

static int count_cb(void *ctx, const char *name)
{
	(void)name;
	(*(unsigned *)ctx)++;
	return 0;
}

static int op_readdir(struct mail_worker *w)
{
	unsigned entries = 0;

	w->err_what = "list the big folder";
	if (io_readdir(w->run->ctx->io, w->run->big_dir, count_cb, &entries) < 0)
		return -1;
	w->calls++;
	if (entries != w->run->ctx->opt.readdir_entries)
		w->readdir_short++;
	return 0;
}

static enum mail_op pick_op(struct mail_worker *w, unsigned n)
{
	/* Every operation once first, so even a short run samples each. */
	static const enum mail_op first[] = { OP_DELIVER, OP_READ, OP_FLAG, OP_READDIR, OP_UNLINK };
	if (n < MF_N_ELEMENTS(first))
		return first[n];
	unsigned r = (unsigned)(nb_rand(&w->rng) % 100);
	for (unsigned op = 0; op < OP_COUNT; op++) {
		if (r < op_weight[op])
			return (enum mail_op)op;
		r -= op_weight[op];
	}
	return OP_READ;
}

static int run_op(struct mail_worker *w, enum mail_op op, unsigned char *buf)
{
	switch (op) {
	case OP_DELIVER: return op_deliver(w);
	case OP_FLAG: return op_flag(w);
	case OP_READ: return op_read(w, buf);
	case OP_READDIR: return op_readdir(w);
	case OP_UNLINK: return op_unlink(w);
	case OP_COUNT: break;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct mail_worker *w = arg;
	struct mail_run *run = w->run;
	unsigned char *buf = mf_malloc(MSG_MAX);
	struct io_stat st;

	/* Connects this thread (libnfs: its own context) before the clock runs. */
	(void)io_stat(run->ctx->io, run->cur_dir, &st);
	pthread_barrier_wait(&run->start);   /* all connected */
	pthread_barrier_wait(&run->start);   /* main has set the deadline */
	uint64_t deadline = atomic_load(&run->deadline);
	/* The first round of every operation runs even past the deadline. */
	for (unsigned n = 0; (n < OP_COUNT || mf_now_us() < deadline) && !nb_stopping(run->ctx); n++) {
		enum mail_op op = pick_op(w, n);
		if (op == OP_UNLINK && w->dl_count == 0)
			op = OP_DELIVER;
		if (op == OP_DELIVER && w->dl_count == DELIVERED_MAX && op_unlink(w) < 0)
			goto fail;
		uint64_t t0 = mf_now_us();
		if (run_op(w, op, buf) < 0)
			goto fail;
		sample_add(&w->samples[op], mf_now_us() - t0);
	}
	free(buf);
	return NULL;
fail:
	w->err = errno != 0 ? errno : EIO;
	nb_fatal_check(run->ctx, w->err, w->err_what);
	free(buf);
	return NULL;
}

/* --- setup: the message pool in cur/ and the big folder --- */

struct filler {
	struct mail_run *run;
	pthread_t thread;
	unsigned id, step;
	atomic_uint *done, *failed;
	int err;                   /* read only after the join */
	const char *what;
};

static int create_file(struct mf_io *io, const char *path, const void *data, size_t len)
{
	struct io_file *f;

	if (io_open(io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &f) < 0)
		return -1;
	int ret = len > 0 ? io_write_all(f, data, len) : 0;
	int err = errno;
	if (io_close(&f) < 0 && ret == 0)
		return -1;
	errno = err;
	return ret;
}

static void *filler_main(void *arg)
{
	struct filler *fl = arg;
	struct mail_run *run = fl->run;
	const struct nb_options *opt = &run->ctx->opt;
	unsigned total = opt->pool_messages + opt->readdir_entries;

	for (unsigned i = fl->id; i < total && !nb_stopping(run->ctx); i += fl->step) {
		char *path;
		int ret;
		if (i < opt->pool_messages) {
			path = pool_name(run, i, false);
			ret = create_file(run->ctx->io, path, run->data + (i * 97) % MSG_MAX, run->pool_size[i]);
			fl->what = "create a pool message in cur/";
		} else {
			/* real maildir names: as long as the folder's entries will be */
			path = mf_asprintf("%s/%u.M%uP1.nasbench,S=0:2,S", run->big_dir, 1700000000 + i, i);
			ret = create_file(run->ctx->io, path, NULL, 0);
			fl->what = "create an entry in the big folder";
		}
		free(path);
		if (ret < 0) {
			fl->err = errno;
			nb_fatal_check(run->ctx, errno, fl->what);
			atomic_fetch_add(fl->failed, 1);
			break;
		}
		atomic_fetch_add(fl->done, 1);
	}
	return NULL;
}

static int populate(struct mail_run *run, const char **what_r)
{
	enum { FILLERS = 8 };
	struct filler fl[FILLERS];
	atomic_uint done, failed;
	unsigned total = run->ctx->opt.pool_messages + run->ctx->opt.readdir_entries;
	int err = 0;

	atomic_init(&done, 0);
	atomic_init(&failed, 0);
	for (unsigned i = 0; i < FILLERS; i++) {
		fl[i] = (struct filler){ .run = run, .id = i, .step = FILLERS, .done = &done,
					 .failed = &failed };
		pthread_create(&fl[i].thread, NULL, filler_main, &fl[i]);
	}
	while (atomic_load(&done) < total && atomic_load(&failed) == 0 && !nb_stopping(run->ctx)) {
		nb_progress_update(run->ctx->progress, "mail: setup", (double)atomic_load(&done) / total);
		usleep(50000);
	}
	for (unsigned i = 0; i < FILLERS; i++) {
		pthread_join(fl[i].thread, NULL);
		if (fl[i].err != 0 && err == 0)
			err = fl[i].err, *what_r = fl[i].what;
	}
	errno = err;
	return err != 0 ? -1 : 0;
}

/* --- a level: run, then report --- */

static enum nb_verdict latency_verdict(double p99, double limit)
{
	return p99 > limit ? NB_FAIL : p99 > limit / 2 ? NB_WARN : NB_PASS;
}

/* Merges every worker's samples of op into one sorted array. */
static void merge_samples(struct mail_worker *w, unsigned n, enum mail_op op, struct nb_lat *lat_r)
{
	size_t total = 0, pos = 0;

	for (unsigned i = 0; i < n; i++)
		total += w[i].samples[op].count;
	uint32_t *all = mf_malloc(MF_MAX(total, 1) * sizeof(uint32_t));
	for (unsigned i = 0; i < n; i++) {
		if (w[i].samples[op].count > 0)
			memcpy(all + pos, w[i].samples[op].us, w[i].samples[op].count * sizeof(uint32_t));
		pos += w[i].samples[op].count;
	}
	nb_lat_compute(all, total, lat_r);
	free(all);
}

/* One row per operation; returns its verdict. */
static enum nb_verdict report_op(struct mail_run *run, struct mail_worker *w, unsigned n,
				 double secs, enum mail_op op, uint64_t readdir_short)
{
	struct nb_lat lat;
	double limit = run->ctx->thr[op_thr[op]];

	merge_samples(w, n, op, &lat);
	enum nb_verdict v = lat.count == 0 ? NB_SKIP : latency_verdict(lat.p99_ms, limit);
	bool short_listing = op == OP_READDIR && readdir_short > 0;
	char *name = mf_asprintf("mail.c%u.%s", n, op_names[op]);
	char *thr = mf_asprintf("p99 < %g ms", limit);
	char *note = !short_listing ? NULL :
		mf_asprintf("%llu listings missed entries", (unsigned long long)readdir_short);
	if (short_listing)
		v = NB_FAIL;
	struct nb_check *c = nb_report_add(run->ctx->report, name, v, lat.p99_ms, "ms", thr, note,
		"%.0f ops/s, p50 %.2f ms, p99 %.2f ms", (double)lat.count / secs, lat.p50_ms, lat.p99_ms);
	char *extra = mf_asprintf("\"concurrency\":%u,\"op\":\"%s\",\"count\":%llu,\"ops_per_s\":%.1f,"
				  "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f", n, op_names[op],
				  (unsigned long long)lat.count, (double)lat.count / secs, lat.p50_ms,
				  lat.p99_ms, lat.max_ms);
	nb_check_set_extra(c, extra);
	free(extra);
	free(name);
	free(thr);
	free(note);
	return v;
}

static bool report_ops(struct mail_run *run, struct mail_worker *w, unsigned n, double secs)
{
	bool acceptable = true;
	uint64_t readdir_short = 0;

	for (unsigned i = 0; i < n; i++)
		readdir_short += w[i].readdir_short;
	for (unsigned op = 0; op < OP_COUNT; op++) {
		if (report_op(run, w, n, secs, (enum mail_op)op, readdir_short) == NB_FAIL)
			acceptable = false;
	}
	return acceptable;
}

static void report_level(struct mail_run *run, struct mail_worker *w, unsigned n, double secs)
{
	struct nb_ctx *ctx = run->ctx;
	uint64_t ops = 0, calls = 0;

	for (unsigned i = 0; i < n; i++) {
		calls += w[i].calls;
		for (unsigned op = 0; op < OP_COUNT; op++)
			ops += w[i].samples[op].count;
	}
	bool acceptable = report_ops(run, w, n, secs);
	double iops = (double)calls / secs;
	char *name = mf_asprintf("mail.c%u", n);
	struct nb_check *c = nb_report_add(ctx->report, name, NB_INFO, iops, "calls/s",
		acceptable ? "latency acceptable" : "latency too high",
		"file-system calls (open, write, fsync, rename, unlink, readdir, read) per second",
		"%u threads: %.0f mail ops/s, %.0f calls/s", n, (double)ops / secs, iops);
	char *extra = mf_asprintf("\"concurrency\":%u,\"ops_per_s\":%.1f,\"calls_per_s\":%.1f,"
				  "\"acceptable\":%s", n, (double)ops / secs, iops,
				  acceptable ? "true" : "false");
	nb_check_set_extra(c, extra);
	free(extra);
	free(name);
	if (acceptable && iops > ctx->mail_iops_ok) {
		ctx->mail_iops_ok = iops;
		ctx->mail_level_ok = n;
	}
	ctx->mail_measured = true;
}

/* Runs the workers for the level's time; returns the seconds measured. */
static double run_workers(struct mail_run *run, struct mail_worker *w, unsigned n, unsigned index)
{
	struct nb_ctx *ctx = run->ctx;
	char *phase = mf_asprintf("mail: %u thread%s", n, n == 1 ? "" : "s");

	run->level = n;
	atomic_store(&run->deadline, UINT64_MAX);
	pthread_barrier_init(&run->start, NULL, n + 1);
	for (unsigned i = 0; i < n; i++) {
		w[i].run = run;
		w[i].id = i;
		w[i].rng = 0x9e3779b97f4a7c15ULL * (i + 1) + index;
		pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
	}
	pthread_barrier_wait(&run->start);
	uint64_t t0 = mf_now_us(), len = ctx->opt.level_ms * 1000ull;
	atomic_store(&run->deadline, t0 + len);
	pthread_barrier_wait(&run->start);
	while (mf_now_us() < t0 + len && !nb_stopping(ctx)) {
		nb_progress_update(ctx->progress, phase,
			(index + (double)(mf_now_us() - t0) / (double)len) / ctx->opt.level_count);
		usleep(50000);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(w[i].thread, NULL);
	pthread_barrier_destroy(&run->start);
	free(phase);
	return (double)(mf_now_us() - t0) / 1e6;
}

/* A FAIL row for the first worker that hit an error; -1 when there was one. */
static int report_worker_error(struct nb_ctx *ctx, struct mail_worker *w, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (w[i].err == 0)
			continue;
		char *note = nb_errstr(w[i].err_what, w[i].err);
		char *name = mf_asprintf("mail.c%u", n);
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "must work", note, "error");
		free(name);
		free(note);
		return -1;
	}
	return 0;
}

static int run_level(struct mail_run *run, unsigned index)
{
	struct nb_ctx *ctx = run->ctx;
	unsigned n = ctx->opt.levels[index];
	struct mail_worker *w = mf_calloc(n, sizeof(*w));

	double secs = run_workers(run, w, n, index);
	int ret = report_worker_error(ctx, w, n);
	if (ret == 0 && !atomic_load(ctx->stop))
		report_level(run, w, n, secs);
	for (unsigned i = 0; i < n; i++) {
		for (unsigned op = 0; op < OP_COUNT; op++)
			free(w[i].samples[op].us);
		for (unsigned k = 0; k < DELIVERED_MAX; k++)
			free(w[i].delivered[k]);
	}
	free(w);
	return ret;
}

static int make_dirs(struct mail_run *run, const char **what_r)
{
	const char *dirs[] = { run->tmp_dir, run->new_dir, run->cur_dir, run->big_dir };

	*what_r = "create the maildir";
	for (size_t i = 0; i < MF_N_ELEMENTS(dirs); i++) {
		if (io_mkdir_parents(run->ctx->io, dirs[i], 0700) < 0)
			return -1;
	}
	return 0;
}

void nb_check_mail(struct nb_ctx *ctx)
{
	struct mail_run run = { .ctx = ctx };
	const char *what = "setup";
	uint64_t rng = 42;

	run.tmp_dir = nb_path(ctx, "mail/Maildir/tmp");
	run.new_dir = nb_path(ctx, "mail/Maildir/new");
	run.cur_dir = nb_path(ctx, "mail/Maildir/cur");
	run.big_dir = nb_path(ctx, "mail/Maildir/.Big/cur");
	run.pool_size = mf_calloc(ctx->opt.pool_messages, sizeof(uint32_t));
	run.pool_flagged = mf_calloc(ctx->opt.pool_messages, sizeof(bool));
	run.data = mf_malloc(DATA_SIZE);
	nb_fill_random(run.data, DATA_SIZE, 0xa11);
	for (unsigned i = 0; i < ctx->opt.pool_messages; i++)
		run.pool_size[i] = MSG_MIN + (uint32_t)(nb_rand(&rng) % (MSG_MAX - MSG_MIN + 1));

	if (make_dirs(&run, &what) < 0 || populate(&run, &what) < 0) {
		int err = errno;
		if (!atomic_load(ctx->stop)) {
			char *note = nb_errstr(what, err);
			nb_fatal_check(ctx, err, what);
			nb_report_add(ctx->report, "mail.setup", NB_FAIL, NAN, NULL, "must work", note, "error");
			free(note);
		}
	} else {
		for (unsigned i = 0; i < ctx->opt.level_count && !nb_stopping(ctx); i++) {
			if (run_level(&run, i) < 0)
				break;
		}
	}
	free(run.tmp_dir);
	free(run.new_dir);
	free(run.cur_dir);
	free(run.big_dir);
	free(run.pool_size);
	free(run.pool_flagged);
	free(run.data);
}
