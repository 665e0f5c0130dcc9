/* nasbench.c: main of mailfleet-nasbench, the NAS commissioning benchmark.
 * Parses the command line, sets up the target (a directory or an nfs:// URL)
 * through io.h, works in a scratch directory it creates, runs the check
 * groups, removes the scratch directory (also after SIGINT/SIGTERM: a
 * dedicated thread takes the signals and raises the stop flag the workers
 * poll), and prints the table or JSON. Exit: 0 no FAIL, 1 a check FAILed,
 * 2 an error stopped the run (usage, unreachable, read-only, no space),
 * 128+signal when interrupted. */
#include "store/nasbench.h"
#include "lib/log.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_FAILED 1
#define EXIT_ERROR 2

static atomic_bool stop_flag;
static atomic_int stop_signal;

static void usage(FILE *out)
{
	fprintf(out,
"usage: mailfleet-nasbench [options] TARGET\n"
"       mailfleet-nasbench --users N --quota SIZE --daily-mails N --avg-size SIZE\n"
"                          [--archive-years N]        (provisioning calculator only)\n"
"TARGET is a directory (kernel NFS mount or local disk) or an nfs:// URL (libnfs).\n"
"  --quick                small, fast run (16 MiB, short levels, 300-entry folder)\n"
"  --size SIZE            sequential test size (default 256M)\n"
"  --only LIST / --skip LIST   groups: mount,func,seq,mail\n"
"  --levels LIST          mail workload concurrency levels (default 1,4,16)\n"
"  --level-time SECS      run time per level (default 5, quick 0.6)\n"
"  --readdir-entries N    entries of the listed folder (default 10000, quick 300)\n"
"  --messages N           messages in cur/ for reads and flag renames (default 400, quick 64)\n"
"  --threshold NAME=VALUE override a threshold (repeatable; names below)\n"
"  --json                 JSON on stdout instead of the table\n"
"  --json-out FILE        also write the JSON to FILE\n"
"  --scratch-name NAME    scratch directory name (default mailfleet-nasbench.HOST.PID)\n"
"  --mount-options FILE   recommended mount options (default: built-in copy of\n"
"                         packaging/nas-mount-options)\n"
"  --mountinfo FILE       mount table to read (default /proc/self/mountinfo)\n"
"  --users N              planned users: capacity verdict and provisioning\n"
"  --quota SIZE --daily-mails N --avg-size SIZE --archive-years N   provisioning\n"
"thresholds:\n");
	for (size_t i = 0; i < NB_THR_COUNT; i++)
		fprintf(out, "  %-16s %8g %-3s %s\n", nb_threshold_defs[i].name, nb_threshold_defs[i].value,
			nb_threshold_defs[i].unit, nb_threshold_defs[i].help);
}

struct cli {
	struct nb_options opt;
	double thr[NB_THR_COUNT];
	const char *target;
	const char *scratch_name;
	bool json;
	const char *json_out;
	struct nb_provision prov;
	bool prov_given;
	bool size_given, level_time_given, entries_given, messages_given;
};

static void defaults(struct cli *cli)
{
	struct nb_options *o = &cli->opt;

	memset(cli, 0, sizeof(*cli));
	for (size_t i = 0; i < NB_THR_COUNT; i++)
		cli->thr[i] = nb_threshold_defs[i].value;
	o->seq_size = 256ull << 20;
	o->block_size = 16384;
	o->levels[0] = 1, o->levels[1] = 4, o->levels[2] = 16;
	o->level_count = 3;
	o->level_ms = 5000;
	o->readdir_entries = 10000;
	o->pool_messages = 400;
	o->race_rounds = 100;
	o->rename_rounds = 200;
	o->mountinfo_path = "/proc/self/mountinfo";
	o->run_mount = o->run_func = o->run_seq = o->run_mail = true;
	cli->prov.archive_years = 1;
}

static void apply_quick(struct cli *cli)
{
	struct nb_options *o = &cli->opt;

	if (!cli->size_given)
		o->seq_size = 16ull << 20;
	if (!cli->level_time_given)
		o->level_ms = 600;
	if (!cli->entries_given)
		o->readdir_entries = 300;
	if (!cli->messages_given)
		o->pool_messages = 64;
	o->race_rounds = 20;
	o->rename_rounds = 40;
}

static int parse_groups(struct nb_options *o, const char *list, bool value)
{
	char *copy = mf_strdup(list), *save = NULL;
	int ret = 0;

	for (char *g = strtok_r(copy, ",", &save); g != NULL; g = strtok_r(NULL, ",", &save)) {
		if (strcmp(g, "mount") == 0) o->run_mount = value;
		else if (strcmp(g, "func") == 0) o->run_func = value;
		else if (strcmp(g, "seq") == 0) o->run_seq = value;
		else if (strcmp(g, "mail") == 0) o->run_mail = value;
		else ret = -1;
	}
	free(copy);
	return ret;
}

static int parse_levels(struct nb_options *o, const char *list)
{
	char *copy = mf_strdup(list), *save = NULL, *end;
	int ret = 0;

	o->level_count = 0;
	for (char *t = strtok_r(copy, ",", &save); t != NULL && ret == 0; t = strtok_r(NULL, ",", &save)) {
		unsigned long v = strtoul(t, &end, 10);
		if (*end != '\0' || v < 1 || v > 256 || o->level_count == NB_MAX_LEVELS)
			ret = -1;
		else
			o->levels[o->level_count++] = (unsigned)v;
	}
	free(copy);
	return ret < 0 || o->level_count == 0 ? -1 : 0;
}

static int parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *v_r)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s || *end != '\0' || v < min || v > max || s[0] == '-')
		return -1;
	*v_r = v;
	return 0;
}

static bool scratch_name_valid(const char *name)
{
	return name[0] != '\0' && strlen(name) < 200 && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

enum {
	OPT_SIZE = 256, OPT_ONLY, OPT_SKIP, OPT_LEVELS, OPT_LEVEL_TIME, OPT_ENTRIES, OPT_THRESHOLD,
	OPT_JSON, OPT_JSON_OUT, OPT_SCRATCH, OPT_MOUNT_OPTIONS, OPT_MOUNTINFO, OPT_USERS,
	OPT_QUOTA, OPT_DAILY, OPT_AVG, OPT_YEARS, OPT_QUICK, OPT_HELP, OPT_MESSAGES,
};

static const struct option long_opts[] = {
	{ "quick", no_argument, NULL, OPT_QUICK },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "only", required_argument, NULL, OPT_ONLY },
	{ "skip", required_argument, NULL, OPT_SKIP },
	{ "levels", required_argument, NULL, OPT_LEVELS },
	{ "level-time", required_argument, NULL, OPT_LEVEL_TIME },
	{ "readdir-entries", required_argument, NULL, OPT_ENTRIES },
	{ "messages", required_argument, NULL, OPT_MESSAGES },
	{ "threshold", required_argument, NULL, OPT_THRESHOLD },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "json-out", required_argument, NULL, OPT_JSON_OUT },
	{ "scratch-name", required_argument, NULL, OPT_SCRATCH },
	{ "mount-options", required_argument, NULL, OPT_MOUNT_OPTIONS },
	{ "mountinfo", required_argument, NULL, OPT_MOUNTINFO },
	{ "users", required_argument, NULL, OPT_USERS },
	{ "quota", required_argument, NULL, OPT_QUOTA },
	{ "daily-mails", required_argument, NULL, OPT_DAILY },
	{ "avg-size", required_argument, NULL, OPT_AVG },
	{ "archive-years", required_argument, NULL, OPT_YEARS },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* One option; -1 with *error_r (static) when its value is bad. */
static int parse_one(struct cli *cli, int c, const char *arg, const char **error_r)
{
	struct nb_options *o = &cli->opt;
	uint64_t v;
	char *end;

	switch (c) {
	case OPT_QUICK: o->quick = true; return 0;
	case OPT_SIZE:
		cli->size_given = true;
		*error_r = "--size wants a size of at least 1M, such as 256M or 1G";
		return nb_parse_size(arg, &o->seq_size) < 0 || o->seq_size < (1u << 20) ? -1 : 0;
	case OPT_ONLY:
		o->run_mount = o->run_func = o->run_seq = o->run_mail = false;
		/* fall through */
	case OPT_SKIP:
		*error_r = "--only/--skip want a list of mount,func,seq,mail";
		return parse_groups(o, arg, c == OPT_ONLY);
	case OPT_LEVELS:
		*error_r = "--levels wants a list of thread counts from 1 to 256, such as 1,4,16";
		return parse_levels(o, arg);
	case OPT_LEVEL_TIME: {
		double secs = strtod(arg, &end);
		cli->level_time_given = true;
		*error_r = "--level-time wants seconds between 0.1 and 3600";
		if (end == arg || *end != '\0' || !(secs >= 0.1 && secs <= 3600))
			return -1;
		o->level_ms = (unsigned)(secs * 1000);
		return 0;
	}
	case OPT_ENTRIES:
		cli->entries_given = true;
		*error_r = "--readdir-entries wants a number from 1 to 1000000";
		if (parse_count(arg, 1, 1000000, &v) < 0)
			return -1;
		o->readdir_entries = (unsigned)v;
		return 0;
	case OPT_MESSAGES:
		cli->messages_given = true;
		*error_r = "--messages wants a number from 1 to 100000";
		if (parse_count(arg, 1, 100000, &v) < 0)
			return -1;
		o->pool_messages = (unsigned)v;
		return 0;
	case OPT_THRESHOLD: return nb_threshold_parse(cli->thr, arg, error_r);
	case OPT_JSON: cli->json = true; return 0;
	case OPT_JSON_OUT: cli->json_out = arg; return 0;
	case OPT_SCRATCH:
		*error_r = "--scratch-name wants a plain directory name";
		cli->scratch_name = arg;
		return scratch_name_valid(arg) ? 0 : -1;
	case OPT_MOUNT_OPTIONS: o->mount_rules_path = arg; return 0;
	case OPT_MOUNTINFO: o->mountinfo_path = arg; return 0;
	case OPT_USERS:
		*error_r = "--users wants a number from 1 to 10^9";
		cli->prov_given = true;
		if (parse_count(arg, 1, 1000000000, &cli->prov.users) < 0)
			return -1;
		o->plan_users = cli->prov.users;
		return 0;
	case OPT_QUOTA:
		*error_r = "--quota wants a size such as 2G";
		return nb_parse_size(arg, &cli->prov.quota_bytes);
	case OPT_DAILY:
		*error_r = "--daily-mails wants a number from 0 to 10^6";
		return parse_count(arg, 0, 1000000, &cli->prov.daily_mails);
	case OPT_AVG:
		*error_r = "--avg-size wants a size such as 75K";
		return nb_parse_size(arg, &cli->prov.avg_size_bytes);
	case OPT_YEARS:
		*error_r = "--archive-years wants a number from 0 to 100";
		if (parse_count(arg, 0, 100, &v) < 0)
			return -1;
		cli->prov.archive_years = (unsigned)v;
		return 0;
	}
	*error_r = "unknown option (see --help)";
	return -1;
}

static int parse_cli(struct cli *cli, int argc, char **argv)
{
	const char *error = NULL;
	int c;

	defaults(cli);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		if (c == OPT_HELP) {
			usage(stdout);
			exit(0);
		}
		if (c == '?' || parse_one(cli, c, optarg, &error) < 0) {
			fprintf(stderr, "mailfleet-nasbench: %s\n", c == '?' ?
				"unknown option or missing value (see --help)" : error);
			return -1;
		}
	}
	if (cli->opt.quick)
		apply_quick(cli);
	for (unsigned i = 0; i < cli->opt.level_count; i++)
		cli->opt.pool_messages = MF_MAX(cli->opt.pool_messages, cli->opt.levels[i]);
	if (optind + 1 == argc)
		cli->target = argv[optind];
	else if (optind != argc || !cli->prov_given) {
		fprintf(stderr, "mailfleet-nasbench: give one TARGET (a directory or an nfs:// URL); see --help\n");
		return -1;
	}
	cli->opt.seq_size -= cli->opt.seq_size % cli->opt.block_size;
	return 0;
}

/* --- signals: one thread takes SIGINT/SIGTERM for the whole process --- */

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (atomic_exchange(&stop_flag, true)) {
			static const char msg[] = "\nmailfleet-nasbench: still cleaning up the scratch directory\n";
			(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		} else {
			atomic_store(&stop_signal, sig);
		}
	}
	return NULL;
}

static void start_signal_thread(void)
{
	static sigset_t set;
	pthread_t th;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	/* Blocked before any other thread exists, so every thread inherits it. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_create(&th, NULL, signal_thread, &set);
	pthread_detach(th);
}

/* --- the run --- */

static int open_target(struct nb_ctx *ctx, const char **error_r)
{
	struct stat st;

	ctx->is_nfs = strncmp(ctx->location, "nfs://", 6) == 0;
	if (!ctx->is_nfs) {
		if (stat(ctx->location, &st) < 0) {
			*error_r = "the target directory does not exist or cannot be reached";
			return -1;
		}
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			*error_r = "the target is not a directory";
			return -1;
		}
		ctx->local_root = realpath(ctx->location, NULL);
		if (ctx->local_root == NULL) {
			*error_r = "cannot resolve the target path";
			return -1;
		}
	}
	/* libnfs caches directory listings (checked against the directory's
	 * mtime) unless told not to; the benchmark measures the NAS, not RAM. */
	char *location = ctx->is_nfs && strstr(ctx->location, "dircache=") == NULL ?
		mf_asprintf("%s%cdircache=0", ctx->location, strchr(ctx->location, '?') ? '&' : '?') :
		mf_strdup(ctx->location);
	errno = 0;
	int ret = io_new_from_location(location, &ctx->io, error_r);
	if (ret < 0 && errno == 0)
		errno = EIO;
	free(location);
	return ret;
}

static void run_groups(struct nb_ctx *ctx)
{
	nb_check_target(ctx);
	if (ctx->opt.run_mount && !nb_stopping(ctx))
		nb_check_mount(ctx);
	if (ctx->opt.run_func && !nb_stopping(ctx))
		nb_check_functional(ctx);
	if (ctx->opt.run_seq && !nb_stopping(ctx))
		nb_check_sequential(ctx);
	if (ctx->opt.run_mail && !nb_stopping(ctx))
		nb_check_mail(ctx);
	if (!nb_stopping(ctx))
		nb_check_capacity(ctx);
}

static void cleanup_scratch(struct nb_ctx *ctx)
{
	char *left = NULL;

	if (ctx->scratch == NULL)
		return;
	nb_progress_update(ctx->progress, "removing scratch dir", 0.5);
	if (nb_scratch_remove(ctx, &left) < 0) {
		char *note = mf_asprintf("%s could not be removed; remove it by hand", left);
		nb_report_add(ctx->report, "target.cleanup", NB_FAIL, NAN, NULL, "nothing left", note,
			      "left behind");
		if (!atomic_load(&ctx->fatal_set))
			nb_fatal_set(ctx, note);
		free(note);
	} else {
		nb_report_add(ctx->report, "target.cleanup", NB_PASS, NAN, NULL, "nothing left", NULL,
			      "scratch directory removed");
	}
	free(left);
}

/* Target and scratch set-up; on failure a FAIL row and the fatal error. */
static int setup(struct nb_ctx *ctx, const char *scratch_name)
{
	const char *error = NULL;

	if (open_target(ctx, &error) < 0) {
		char *msg = mf_asprintf("%s: %s (%s)", ctx->location, error, strerror(errno));
		nb_report_add(ctx->report, "target.reachable", NB_FAIL, NAN, NULL, "must work", msg, "error");
		nb_fatal_set(ctx, msg);
		free(msg);
		return -1;
	}
	ctx->scratch = scratch_name == NULL ? NULL : mf_strdup(scratch_name);
	if (nb_scratch_create(ctx, &error) < 0) {
		int err = errno;
		char *msg = mf_asprintf("%s: %s (%s)%s", ctx->location, error, strerror(err),
					err == EROFS ? ": the target is read-only" :
					err == EACCES || err == EPERM ? ": no write permission" : "");
		nb_report_add(ctx->report, "target.writable", NB_FAIL, NAN, NULL, "must work", msg, "error");
		nb_fatal_set(ctx, msg);
		free(msg);
		return -1;
	}
	nb_report_add(ctx->report, "target.writable", NB_PASS, NAN, NULL, "must work", NULL,
		      "scratch directory created");
	return 0;
}

static int exit_status(struct nb_ctx *ctx)
{
	int sig = atomic_load(&stop_signal);

	if (atomic_load(&stop_flag))
		return 128 + (sig != 0 ? sig : SIGINT);
	if (ctx->fatal != NULL)
		return EXIT_ERROR;
	return nb_report_count(ctx->report, NB_FAIL) > 0 ? EXIT_FAILED : 0;
}

static void output(struct nb_ctx *ctx, const struct cli *cli, int status)
{
	struct nb_run_info info = {
		.target = ctx->location, .scratch = ctx->scratch, .error = ctx->fatal,
		.backend = ctx->io != NULL ? io_backend_name(ctx->io) : ctx->is_nfs ? "nfs" : "posix",
		.interrupted = atomic_load(&stop_flag), .exit_status = status,
	};

	nb_progress_clear(ctx->progress);
	if (cli->json)
		nb_report_print_json(ctx->report, &info, stdout);
	else
		nb_report_print_table(ctx->report, &info, stdout);
	fflush(stdout);
	if (cli->json_out != NULL) {
		FILE *f = fopen(cli->json_out, "w");
		if (f == NULL || (nb_report_print_json(ctx->report, &info, f), fclose(f)) != 0)
			fprintf(stderr, "mailfleet-nasbench: cannot write %s: %s\n", cli->json_out, strerror(errno));
	}
	if (info.interrupted)
		fprintf(stderr, "mailfleet-nasbench: interrupted; %s\n", ctx->scratch == NULL ?
			"nothing was left behind" : "the scratch directory was removed");
	else if (ctx->fatal != NULL)
		fprintf(stderr, "mailfleet-nasbench: %s\n", ctx->fatal);
}

static int provision_only(const struct cli *cli)
{
	struct nb_report report;
	struct nb_run_info info = { .target = "-", .backend = "none", .exit_status = 0 };

	nb_report_init(&report);
	nb_provision_report(&report, &cli->prov);
	if (cli->json)
		nb_report_print_json(&report, &info, stdout);
	else
		nb_report_print_table(&report, &info, stdout);
	nb_report_deinit(&report);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli;
	struct nb_report report;
	struct nb_progress progress;
	struct nb_ctx ctx;

	if (parse_cli(&cli, argc, argv) < 0)
		return EXIT_ERROR;
	if (cli.target == NULL)
		return provision_only(&cli);
	start_signal_thread();
	memset(&ctx, 0, sizeof(ctx));
	nb_report_init(&report);
	nb_progress_init(&progress, isatty(STDERR_FILENO) == 1);
	pthread_mutex_init(&ctx.fatal_lock, NULL);
	atomic_init(&ctx.fatal_set, false);
	ctx.location = cli.target;
	ctx.opt = cli.opt;
	memcpy(ctx.thr, cli.thr, sizeof(ctx.thr));
	ctx.report = &report;
	ctx.progress = &progress;
	ctx.stop = &stop_flag;

	if (setup(&ctx, cli.scratch_name) == 0)
		run_groups(&ctx);
	cleanup_scratch(&ctx);
	if (cli.prov_given && cli.prov.quota_bytes > 0)
		nb_provision_report(&report, &cli.prov);
	int status = exit_status(&ctx);
	output(&ctx, &cli, status);

	io_free(&ctx.io);
	free(ctx.local_root);
	free(ctx.scratch);
	free(ctx.fatal);
	pthread_mutex_destroy(&ctx.fatal_lock);
	nb_report_deinit(&report);
	return status;
}
