/* physlimit.c: the physical limit of maildir delivery on a store, with no
 * server at all, for the delivery benchmark (tests/bench/bench_lmtp.py).
 *
 *   physlimit --location PATH|nfs://... [--messages N] [--users U]
 *             [--threads T] [--size BYTES] [--dir-fsync] [--prefix NAME]
 *
 * T threads write N files of about BYTES bytes, spread over U mailboxes
 * <prefix>/uK/Maildir/{tmp,new}, each as create (exclusive) + write + fsync +
 * close + rename tmp/ -> new/; with --dir-fsync also an fsync of new/ after
 * the rename (what mailfleet does so that the directory entry is durable).
 * Everything goes through the store's io layer (io_new_from_location), so an
 * nfs:// location measures libnfs against the same server the daemon uses.
 * Afterwards it counts the files in every new/ and fails when any is missing.
 * Prints one line of key=value figures. */
#include "lib/lib.h"
#include "store/io.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PHYS_THREADS_MAX 256
#define PHYS_PATH_MAX 512

struct phys_opts {
	const char *location;
	const char *prefix;
	unsigned messages;
	unsigned users;
	unsigned threads;
	unsigned size;
	bool dir_fsync;
};

struct phys_thread {
	const struct phys_opts *opts;
	struct mf_io *io;
	const char *content;
	size_t content_len;
	unsigned index;
	pthread_t tid;
	unsigned ok;
	char error[PHYS_PATH_MAX + 128];
};

static char *make_content(unsigned size, size_t *len_r)
{
	char *data = mf_malloc((size_t)size + 80);
	size_t len = 0;
	unsigned line = 0;

	while (len < size) {
		for (unsigned i = 0; i < 76; i++)
			data[len + i] = (char)('a' + (line * 7 + i) % 26);
		data[len + 76] = '\r';
		data[len + 77] = '\n';
		len += 78;
		line++;
	}
	*len_r = size;
	return data;
}

static int deliver_one(struct phys_thread *t, unsigned msg)
{
	const struct phys_opts *o = t->opts;
	char box[PHYS_PATH_MAX / 2], tmp[PHYS_PATH_MAX], new[PHYS_PATH_MAX], name[128];
	struct io_file *file;
	const char *step = "open";

	snprintf(box, sizeof(box), "%s/u%u/Maildir", o->prefix, msg % o->users + 1);
	snprintf(name, sizeof(name), "%u.P%dT%uN%u.physlimit", msg, (int)getpid(), t->index, msg);
	snprintf(tmp, sizeof(tmp), "%.255s/tmp/%.127s", box, name);
	snprintf(new, sizeof(new), "%.255s/new/%.127s", box, name);
	if (io_open(t->io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &file) < 0)
		goto fail;
	step = "write";
	if (io_write_all(file, t->content, t->content_len) < 0) {
		io_close(&file);
		goto fail;
	}
	step = "fsync";
	if (io_fsync(file) < 0) {
		io_close(&file);
		goto fail;
	}
	step = "close";
	if (io_close(&file) < 0)
		goto fail;
	step = "rename";
	if (io_rename(t->io, tmp, new) < 0)
		goto fail;
	snprintf(new, sizeof(new), "%.255s/new", box);
	step = "fsync of new/";
	if (o->dir_fsync && io_fsync_dir(t->io, new) < 0)
		goto fail;
	return 0;
fail:
	snprintf(t->error, sizeof(t->error), "%s %.*s: %s", step, PHYS_PATH_MAX, tmp, strerror(errno));
	return -1;
}

static void *phys_thread_run(void *ctx)
{
	struct phys_thread *t = ctx;

	for (unsigned msg = t->index; msg < t->opts->messages; msg += t->opts->threads) {
		if (deliver_one(t, msg) < 0)
			break;
		t->ok++;
	}
	return NULL;
}

static int make_mailboxes(struct mf_io *io, const struct phys_opts *o)
{
	static const char *const subdirs[] = { "tmp", "new", "cur" };
	char path[PHYS_PATH_MAX];

	for (unsigned u = 1; u <= o->users; u++) {
		for (unsigned i = 0; i < MF_N_ELEMENTS(subdirs); i++) {
			snprintf(path, sizeof(path), "%s/u%u/Maildir/%s", o->prefix, u, subdirs[i]);
			if (io_mkdir_parents(io, path, 0700) < 0) {
				fprintf(stderr, "physlimit: mkdir %s: %s\n", path, strerror(errno));
				return -1;
			}
		}
	}
	return 0;
}

static int count_cb(void *ctx, const char *name)
{
	(*(unsigned *)ctx)++;
	return 0;
}

/* Files present in every new/, or -1 when a listing fails. */
static long count_delivered(struct mf_io *io, const struct phys_opts *o)
{
	char path[PHYS_PATH_MAX];
	unsigned total = 0;

	for (unsigned u = 1; u <= o->users; u++) {
		snprintf(path, sizeof(path), "%s/u%u/Maildir/new", o->prefix, u);
		if (io_readdir(io, path, count_cb, &total) < 0) {
			fprintf(stderr, "physlimit: readdir %s: %s\n", path, strerror(errno));
			return -1;
		}
	}
	return (long)total;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Runs the threads; returns the number of files written, *secs_r the wall time. */
static unsigned run_threads(struct mf_io *io, const struct phys_opts *o, double *secs_r)
{
	struct phys_thread *threads = mf_calloc(o->threads, sizeof(*threads));
	size_t content_len;
	char *content = make_content(o->size, &content_len);
	unsigned ok = 0;
	uint64_t start = mf_now_us();

	for (unsigned i = 0; i < o->threads; i++) {
		threads[i] = (struct phys_thread){ .opts = o, .io = io, .content = content,
						   .content_len = content_len, .index = i };
		if (pthread_create(&threads[i].tid, NULL, phys_thread_run, &threads[i]) != 0) {
			fprintf(stderr, "physlimit: pthread_create failed\n");
			exit(2);
		}
	}
	for (unsigned i = 0; i < o->threads; i++) {
		pthread_join(threads[i].tid, NULL);
		ok += threads[i].ok;
		if (threads[i].error[0] != '\0')
			fprintf(stderr, "physlimit: thread %u: %s\n", i, threads[i].error);
	}
	*secs_r = (double)(mf_now_us() - start) / 1e6;
	free(content);
	free(threads);
	return ok;
}

static unsigned parse_uint(const char *opt, const char *value, unsigned min, unsigned max)
{
	char *end;
	unsigned long v = strtoul(value, &end, 10);
	if (*value == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "physlimit: %s wants a number in %u..%u\n", opt, min, max);
		exit(2);
	}
	return (unsigned)v;
}

static void usage(void)
{
	fprintf(stderr, "usage: physlimit --location PATH|nfs://URL [--messages N] [--users U]\n"
			"                 [--threads T] [--size BYTES] [--dir-fsync] [--prefix NAME]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct phys_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--dir-fsync") == 0) {
			o->dir_fsync = true;
			continue;
		}
		const char *v = i + 1 < argc ? argv[++i] : NULL;
		if (v == NULL)
			usage();
		if (strcmp(a, "--location") == 0) o->location = v;
		else if (strcmp(a, "--prefix") == 0) o->prefix = v;
		else if (strcmp(a, "--messages") == 0) o->messages = parse_uint(a, v, 1, 100000000);
		else if (strcmp(a, "--users") == 0) o->users = parse_uint(a, v, 1, 1000000);
		else if (strcmp(a, "--threads") == 0) o->threads = parse_uint(a, v, 1, PHYS_THREADS_MAX);
		else if (strcmp(a, "--size") == 0) o->size = parse_uint(a, v, 1, 100000000);
		else usage();
	}
	if (o->location == NULL || strlen(o->prefix) > 64 || strchr(o->prefix, '/') != NULL || strcmp(o->prefix, "..") == 0)
		usage();
}

int main(int argc, char **argv)
{
	struct phys_opts o = { .prefix = "physlimit", .messages = 1000, .users = 200,
			       .threads = 4, .size = 10240 };
	struct mf_io *io;
	const char *error;
	double secs;

	parse_args(argc, argv, &o);
	if (io_new_from_location(o.location, &io, &error) < 0) {
		fprintf(stderr, "physlimit: %s: %s\n", o.location, error);
		return 2;
	}
	if (make_mailboxes(io, &o) < 0)
		return 2;
	double cpu0 = cpu_seconds();
	unsigned ok = run_threads(io, &o, &secs);
	double cpu = cpu_seconds() - cpu0;
	long found = count_delivered(io, &o);
	printf("messages=%u ok=%u found=%ld seconds=%.3f rate=%.1f dir_fsync=%d backend=%s "
	       "cpu_s=%.3f\n", o.messages, ok, found, secs, secs > 0 ? ok / secs : 0.0,
	       o.dir_fsync ? 1 : 0, io_backend_name(io), cpu);
	io_free(&io);
	return ok == o.messages && found == (long)o.messages ? 0 : 1;
}
