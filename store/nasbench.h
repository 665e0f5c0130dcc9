/* nasbench.h: the parts of mailfleet-nasbench, the NAS commissioning benchmark
 * (store/nasbench.c is its main). Every check reaches the target through the
 * store's io.h, so it measures what mailfleetd experiences; only facts that
 * exist solely for a local path (mount options, dropping the page cache) use
 * the local file system directly, in nasbench-local.c.
 *
 * A run is one struct nb_ctx built in main. Checks append rows to its report
 * (nb_report_add); a row has a verdict, a measured figure and the threshold.
 * Thresholds have names (nb_threshold_defs) so `--threshold NAME=VALUE` can
 * override them. Workers poll nb_stopping() and return early once SIGINT or
 * SIGTERM arrived; main then removes the scratch directory. */
#ifndef MF_STORE_NASBENCH_H
#define MF_STORE_NASBENCH_H

#include "lib/lib.h"
#include "store/io.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

enum nb_verdict { NB_PASS, NB_WARN, NB_FAIL, NB_INFO, NB_SKIP };

/* --- thresholds --- */
enum nb_thr {
	NB_THR_SEQ_WRITE_S,     /* flushed sequential write, seconds per 256 MiB (FAIL above) */
	NB_THR_SEQ_READ_S,      /* read back right after writing, s per 256 MiB (WARN above) */
	NB_THR_COLD_READ_S,     /* read bypassing the client cache, s per 256 MiB (WARN above) */
	NB_THR_CLOCK_SKEW_S,    /* NAS clock vs local clock (FAIL above, WARN above half) */
	NB_THR_FSYNC_MS,        /* fsync of 1 MiB of fresh data (WARN above) */
	NB_THR_DELIVER_P99_MS,  /* mail workload p99 per operation: FAIL above, WARN above half */
	NB_THR_FLAG_P99_MS,
	NB_THR_READ_P99_MS,
	NB_THR_UNLINK_P99_MS,
	NB_THR_READDIR_P99_MS,
	NB_THR_COUNT
};

struct nb_threshold_def {
	const char *name;
	double value;
	const char *unit;
	const char *help;
};
extern const struct nb_threshold_def nb_threshold_defs[NB_THR_COUNT];

/* Parses "NAME=VALUE" into values[]; -1 with *error_r (static) on a bad one. */
int nb_threshold_parse(double values[NB_THR_COUNT], const char *spec, const char **error_r);

/* --- the report --- */
struct nb_check {
	char *name;       /* "group.check", e.g. "func.rename" */
	enum nb_verdict verdict;
	char *figure;     /* the measured figure, human readable */
	double value;     /* the same as a number for --json (NAN: none) */
	char *unit;       /* unit of value ("s", "ms", "ops/s", ...) */
	char *threshold;  /* the threshold, human readable ("-" when none) */
	char *note;       /* why it is not PASS, or what was measured how; may be NULL */
	char *extra_json; /* extra members for --json ("\"a\":1,\"b\":2"); may be NULL */
};

struct nb_report {
	pthread_mutex_t lock;
	struct nb_check *checks;
	size_t count, cap;
};

void nb_report_init(struct nb_report *report);
void nb_report_deinit(struct nb_report *report);
/* Adds a row; strings are copied. unit/threshold/note may be NULL. */
struct nb_check *nb_report_add(struct nb_report *report, const char *name,
			       enum nb_verdict verdict, double value, const char *unit,
			       const char *threshold, const char *note,
			       const char *figure_fmt, ...) MF_PRINTF(8, 9);
/* Sets the row's extra --json members (copied). */
void nb_check_set_extra(struct nb_check *check, const char *json_members);
const char *nb_verdict_name(enum nb_verdict verdict);
/* Counts rows with the verdict. */
size_t nb_report_count(const struct nb_report *report, enum nb_verdict verdict);

struct nb_run_info {
	const char *target;
	const char *backend;
	const char *scratch;
	const char *error;      /* the one-line error that stopped the run, or NULL */
	bool interrupted;
	int exit_status;
};
void nb_report_print_table(const struct nb_report *report, const struct nb_run_info *info, FILE *out);
void nb_report_print_json(const struct nb_report *report, const struct nb_run_info *info, FILE *out);
/* Appends s as a JSON string literal (with quotes) to out. */
void nb_json_string(FILE *out, const char *s);

/* --- progress bar (stderr, drawn only when stderr is a terminal) --- */
struct nb_progress {
	pthread_mutex_t lock;
	bool enabled;
	bool drawn;
	uint64_t last_draw_us;
};
void nb_progress_init(struct nb_progress *progress, bool enabled);
/* Shows phase and fraction (0..1); redraws at most 10 times a second. */
void nb_progress_update(struct nb_progress *progress, const char *phase, double fraction);
/* Erases the bar so that normal output starts on a clean line. */
void nb_progress_clear(struct nb_progress *progress);

/* --- the run --- */
#define NB_MAX_LEVELS 8

struct nb_options {
	bool quick;
	uint64_t seq_size;          /* bytes for the sequential test */
	uint32_t block_size;        /* 16 KiB */
	unsigned levels[NB_MAX_LEVELS];
	unsigned level_count;
	unsigned level_ms;          /* run time of each concurrency level */
	unsigned readdir_entries;   /* size of the readdir folder (10,000) */
	unsigned pool_messages;     /* messages in cur/ for reads and flag renames */
	unsigned race_rounds;       /* rounds of the exclusive-create race */
	unsigned rename_rounds;     /* rounds of the atomic-rename check */
	const char *mountinfo_path; /* /proc/self/mountinfo */
	const char *mount_rules_path; /* NULL: the recommended set built in */
	/* which groups run */
	bool run_mount, run_func, run_seq, run_mail;
	/* capacity comparison: 0 = none planned */
	uint64_t plan_users;
};

struct nb_ctx {
	struct mf_io *io;
	const char *location;      /* as given */
	bool is_nfs;               /* through libnfs (no client cache) */
	char *local_root;          /* realpath of a local target, else NULL */
	char *scratch;             /* scratch dir, relative to the io root */
	struct nb_options opt;
	double thr[NB_THR_COUNT];
	struct nb_report *report;
	struct nb_progress *progress;
	atomic_bool *stop;         /* set by the signal thread */
	/* The first fatal error (no space, read-only, server gone); stops the run. */
	pthread_mutex_t fatal_lock;
	char *fatal;               /* under fatal_lock */
	atomic_bool fatal_set;
	/* filled by the mail workload for the capacity estimate */
	double mail_iops_ok;       /* file-system calls/s at acceptable latency (0: none) */
	unsigned mail_level_ok;    /* the concurrency level that gave it */
	bool mail_measured;
};

static inline bool nb_stopping(struct nb_ctx *ctx)
{
	return atomic_load(ctx->stop) || atomic_load(&ctx->fatal_set);
}

/* Records a fatal error (first one wins) when err is one that makes further
 * checks pointless: ENOSPC, EDQUOT, EROFS. Returns true when it was fatal. */
bool nb_fatal_check(struct nb_ctx *ctx, int err, const char *what);
/* Records msg as the fatal error unless one is recorded already. */
void nb_fatal_set(struct nb_ctx *ctx, const char *msg);
/* "scratch/rel" joined; free() it. */
char *nb_path(const struct nb_ctx *ctx, const char *rel_fmt, ...) MF_PRINTF(2, 3);
/* A formatted "what: strerror" for notes; free() it. */
char *nb_errstr(const char *what, int err);

/* A small fast PRNG (xorshift64*), one per thread. */
static inline uint64_t nb_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}
/* Fills buf with pseudo-random bytes (incompressible, so NAS compression or
 * deduplication cannot flatter the figures). */
void nb_fill_random(void *buf, size_t len, uint64_t seed);

/* --- scratch directory (nasbench-scratch.c) --- */
/* Creates the scratch directory "mailfleet-nasbench.<host>.<pid>" (or uses
 * it when it exists and is empty). -1 with *error_r (static) and errno. */
int nb_scratch_create(struct nb_ctx *ctx, const char **error_r);
/* Removes everything below and including the scratch dir. Returns -1 when
 * something could not be removed (*left_r names one such path; free() it). */
int nb_scratch_remove(struct nb_ctx *ctx, char **left_r);
/* Removes everything below rel (relative to the io root), rel too. */
int nb_remove_tree(struct mf_io *io, const char *rel);

/* --- local-path facts (nasbench-local.c) --- */
/* The mount that holds path: fs type, mount point, per-mount and super
 * options joined with ','. -1 with *error_r (static) when not found. */
struct nb_mount {
	char *mount_point;
	char *fstype;
	char *source;
	char *options;  /* per-mount options + "," + super options */
};
int nb_mount_find(const char *mountinfo_path, const char *path, struct nb_mount *mnt_r,
		  const char **error_r);
void nb_mount_free(struct nb_mount *mnt);
/* Drops the page cache of a local file (posix_fadvise DONTNEED) and returns
 * the percentage of its pages still cached (mincore), or -1 with errno. */
int nb_local_drop_cache(const char *path, double *still_cached_pct_r);

/* --- the recommended NFS mount options (nasbench-mount.c) --- */
/* The packaging/nas-mount-options text built into the binary. */
const char *nb_mount_rules_builtin(void);
/* Compares options ("rw,noatime,vers=4.2,...") with the rules text and adds
 * one "mount.<option>" row per rule. -1 with *error_r on a bad rules line. */
int nb_mount_evaluate(struct nb_report *report, const char *rules, const char *options,
		      const char **error_r);
/* The mount group: decides applicability (INFO for local disks and libnfs). */
void nb_check_mount(struct nb_ctx *ctx);

/* --- the checks --- */
void nb_check_target(struct nb_ctx *ctx);     /* free space */
void nb_check_functional(struct nb_ctx *ctx); /* nasbench-func.c */
void nb_check_rename_atomic(struct nb_ctx *ctx);     /* nasbench-race.c */
void nb_check_exclusive_create(struct nb_ctx *ctx);  /* nasbench-race.c */
void nb_check_fsync(struct nb_ctx *ctx);             /* nasbench-seq.c */
void nb_check_sequential(struct nb_ctx *ctx); /* nasbench-seq.c */
void nb_check_mail(struct nb_ctx *ctx);       /* nasbench-mail.c */

/* --- capacity and provisioning (nasbench-capacity.c) --- */
#define NB_IOPS_PER_USER_SYSTEM 0.39
#define NB_IOPS_PER_USER_STORE 0.2
#define NB_IOPS_PER_USER_ARCHIVE 0.1

struct nb_provision {
	uint64_t users;
	uint64_t quota_bytes;
	uint64_t daily_mails;
	uint64_t avg_size_bytes;
	unsigned archive_years;
};
struct nb_provision_result {
	double store_bytes;        /* users x quota x 1.2 */
	double archive_year_bytes; /* users x daily x avg x 365 x 0.5 */
	double archive_total_bytes;
	double iops_store, iops_system, iops_archive;
};
void nb_provision_compute(const struct nb_provision *in, struct nb_provision_result *out);
/* Adds the provisioning rows to the report. */
void nb_provision_report(struct nb_report *report, const struct nb_provision *in);
/* Adds the capacity rows from ctx->mail_iops_ok. */
void nb_check_capacity(struct nb_ctx *ctx);
/* "2G", "512M", "64K", "100" (bytes, powers of 1024); -1 on a bad size. */
int nb_parse_size(const char *s, uint64_t *bytes_r);
/* "12.3 GiB" into buf. */
const char *nb_format_bytes(double bytes, char *buf, size_t size);

/* Latency statistics over samples in microseconds (sorted in place). */
struct nb_lat {
	uint64_t count;
	double p50_ms, p99_ms, max_ms;
};
void nb_lat_compute(uint32_t *samples_us, size_t n, struct nb_lat *lat_r);

#endif
