/* main.c: mailfleetd, the node daemon. Wires the parts together in order:
 * configuration, directory (with the demo user on the embedded default),
 * store, TLS, listening sockets (as root), then the switch to the run user,
 * then the event loops. The main thread afterwards only waits for signals
 * (SIGHUP reloads the certificate, SIGINT/SIGTERM stop) and once a second
 * refreshes the directory and pings the systemd watchdog. */
#include "cluster/directory.h"
#include "frontend/config.h"
#include "frontend/privs.h"
#include "frontend/server.h"
#include "frontend/tls.h"
#include "lib/log.h"
#include "imapd/imap.h"
#include "lmtpd/lmtp.h"
#include "pop3d/pop3.h"
#include "store/store.h"
#include "store/mailbox-watch.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define MAILFLEET_VERSION "0.1"
#define SHUTDOWN_WAIT_MS 30000

/* LeakSanitizer: libconfig 1.5 leaks a string buffer when a syntax error
 * interrupts a quoted string; not ours to fix, and only on a bad config. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

struct daemon {
	struct mf_config cfg;
	const char *config_path;
	const char *ready_file;
	int ready_fd;
	bool check_only;
	char hostname[256];
	char error[1024];

	struct directory *dir;
	struct store *store;
	struct mailbox_watch *watch;   /* mailboxes idling sessions wait on */
	struct tls_ctx *tls;
	struct server *server;
	struct mf_context ctx;
	char listening[1024];       /* "lmtp 127.0.0.1:2424, ..." */
	uint64_t watchdog_usec;
};

/* Which protocol module serves which listener; NULL = not built yet. */
static const struct proto_handler *protocol_handler(enum mf_protocol proto)
{
	switch (proto) {
	case MF_PROTO_LMTP:
		return &lmtp_handler;
	case MF_PROTO_IMAP:
		return &imap_handler;
	case MF_PROTO_POP3:
		return &pop3_handler;
	case MF_PROTO_HEALTH:
		break;
	}
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: mailfleetd [--config FILE] [--check-config] [--foreground]\n"
		"                  [--ready-file PATH] [--help] [--version]\n"
		"  --config FILE     read FILE (libconfig syntax) instead of the embedded default\n"
		"  --check-config    print the effective configuration and exit (1 on error)\n"
		"  --foreground      run in the foreground (the default; for systemd Type=notify)\n"
		"  --ready-file PATH created empty at start, gets the pid once all ports listen\n");
}

/* 0 = go on, 1 = exit 0 (help, version), -1 = exit 1. */
static int parse_args(struct daemon *d, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "c:Cfr:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': d->config_path = optarg; break;
		case 'C': d->check_only = true; break;
		case 'f': break;
		case 'r': d->ready_file = optarg; break;
		case 'h': usage(stdout); return 1;
		case 'V': printf("mailfleetd %s\n", MAILFLEET_VERSION); return 1;
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static int fail(struct daemon *d, const char *fmt, ...) MF_PRINTF(2, 3);
static int fail(struct daemon *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	return -1;
}

static void resolve_hostname(struct daemon *d)
{
	if (d->cfg.hostname != NULL) {
		snprintf(d->hostname, sizeof(d->hostname), "%s", d->cfg.hostname);
		return;
	}
	if (gethostname(d->hostname, sizeof(d->hostname) - 1) < 0 || d->hostname[0] == '\0')
		snprintf(d->hostname, sizeof(d->hostname), "localhost");
	d->hostname[sizeof(d->hostname) - 1] = '\0';
}

static bool store_is_local(const struct mf_config *cfg)
{
	return strncmp(cfg->store_location, "nfs://", 6) != 0;
}

/* mkdir -p of path's parents (and path itself when whole). */
static int make_dirs(const char *path, bool whole)
{
	char *copy = mf_strdup(path);
	int ret = 0;

	for (char *p = copy + 1; ret == 0 && (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST)
			ret = -1;
		*p = '/';
	}
	if (ret == 0 && whole && mkdir(copy, 0755) < 0 && errno != EEXIST)
		ret = -1;
	free(copy);
	return ret;
}

static int prepare_dirs(struct daemon *d)
{
	const struct mf_config *cfg = &d->cfg;

	if (store_is_local(cfg) && make_dirs(cfg->store_location, true) < 0)
		return fail(d, "store %s: cannot create: %s", cfg->store_location, strerror(errno));
	if (make_dirs(cfg->directory_path, false) < 0)
		return fail(d, "directory %s: cannot create its parent: %s", cfg->directory_path,
			    strerror(errno));
	return 0;
}

static int create_demo_user(struct daemon *d)
{
	struct dir_domain_info dom;
	struct dir_user_info user;
	const char *error;

	if (directory_domain_get(d->dir, "example.test", &dom) != 1) {
		struct dir_change ch = { .type = DIR_CH_DOMAIN_ADD, .name = "example.test" };
		if (directory_commit(d->dir, &ch, &error) < 0)
			return fail(d, "demo domain example.test: %s", error);
	}
	if (directory_user_get(d->dir, "demo@example.test", &user) == 1)
		return 0;

	char *hash = dir_password_hash("demo", NULL);
	if (hash == NULL)
		return fail(d, "demo user: cannot hash the password");
	struct dir_change ch = { .type = DIR_CH_USER_ADD, .name = "demo@example.test", .value = hash };
	int ret = directory_commit(d->dir, &ch, &error);
	free(hash);
	if (ret < 0)
		return fail(d, "demo user demo@example.test: %s", error);
	log_info("created demo user demo@example.test (password \"demo\")");
	return 0;
}

static int open_directory(struct daemon *d)
{
	const char *error;

	if (directory_open(d->cfg.directory_path, &d->dir, &error) < 0)
		return fail(d, "directory %s: %s", d->cfg.directory_path, error);
	return d->cfg.create_demo_user ? create_demo_user(d) : 0;
}

static int open_store(struct daemon *d)
{
	const struct mf_config *cfg = &d->cfg;
	struct store_settings set;
	struct mf_io *io;
	const char *error;

	if (io_new_from_location(cfg->store_location, &io, &error) < 0)
		return fail(d, "store %s: %s", cfg->store_location, error);
	if (cfg->store_fault_inject != NULL) {
		io = io_fault_new(io);
		if (io_fault_parse(io, cfg->store_fault_inject, &error) < 0) {
			fail(d, "store.fault_inject \"%s\": %s", cfg->store_fault_inject, error);
			io_free(&io);
			return -1;
		}
		log_warn("store fault injection is on: %s (for tests only)", cfg->store_fault_inject);
	}
	store_settings_defaults(&set);
	set.compress_lz4 = cfg->store_compress_lz4;
	set.fsync = cfg->store_fsync;
	set.lock_timeout_secs = cfg->store_lock_timeout_secs;
	set.hostname = d->hostname;
	if (store_new(io, &set, &d->store, &error) < 0)
		return fail(d, "store %s: %s", cfg->store_location, error);
	if (!cfg->store_fsync)
		log_warn("store.fsync is off: acknowledged mail can be lost on a crash");
	return 0;
}

static int prepare_tls(struct daemon *d)
{
	const char *error;

	d->tls = tls_ctx_new(d->cfg.tls_cert, d->cfg.tls_key);
	if (d->cfg.tls_self_signed &&
	    tls_ctx_ensure_self_signed(d->tls, d->hostname, &error) < 0)
		return fail(d, "TLS: %s", error);
	if (tls_ctx_load(d->tls, &error) < 0)
		return fail(d, "TLS: %s", error);
	return 0;
}

static void append_listening(struct daemon *d, const char *name)
{
	size_t len = strlen(d->listening);

	snprintf(d->listening + len, sizeof(d->listening) - len, "%s%s", len > 0 ? ", " : "", name);
}

static int bind_listeners(struct daemon *d)
{
	struct server_settings set = {
		.limits = d->cfg.limits, .event_threads = d->cfg.event_threads,
		.worker_threads = d->cfg.worker_threads, .tls = d->tls, .context = &d->ctx,
	};
	char name[160];
	const char *error;

	d->server = server_new(&set);
	for (unsigned i = 0; i < d->cfg.listener_count; i++) {
		const struct mf_listener_config *l = &d->cfg.listeners[i];
		const struct proto_handler *h = protocol_handler(l->protocol);

		config_listener_describe(l, name, sizeof(name));
		if (h == NULL) {
			log_info("%s: service not built yet; its port stays closed", name);
			continue;
		}
		if (server_listen(d->server, l, h, &error) < 0)
			return fail(d, "%s", error);
		append_listening(d, name);
	}
	if (d->listening[0] == '\0')
		log_warn("no listener is open (none configured for a built service)");
	return 0;
}

/* Runs the access check as the target user in a child, so a failure leaves
 * the parent free to decide. True when every path is usable. */
static bool paths_usable_as(const struct privs_target *t, const char *const *paths, unsigned n,
			    const char **bad_r)
{
	for (unsigned i = 0; i < n; i++) {
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			if (setgid(t->gid) < 0 || setuid(t->uid) < 0)
				_exit(2);
			_exit(access(paths[i], R_OK | W_OK | X_OK) == 0 ? 0 : 1);
		}
		if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			*bad_r = paths[i];
			return false;
		}
	}
	return true;
}

static int drop_privileges(struct daemon *d)
{
	const struct mf_config *cfg = &d->cfg;
	struct privs_target t;
	const char *paths[3], *bad;
	unsigned n = 0;
	char tls_dir[4096];

	if (geteuid() != 0 || cfg->run_user == NULL)
		return 0;
	if (privs_lookup(cfg->run_user, cfg->run_group, &t, d->error, sizeof(d->error)) < 0)
		return -1;
	if (store_is_local(cfg))
		paths[n++] = cfg->store_location;
	paths[n++] = cfg->directory_path;
	if (cfg->tls_self_signed) {
		snprintf(tls_dir, sizeof(tls_dir), "%s", cfg->tls_key);
		char *slash = strrchr(tls_dir, '/');
		if (slash != NULL && slash != tls_dir) {
			*slash = '\0';
			paths[n++] = tls_dir;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (privs_chown_tree(paths[i], &t, d->error, sizeof(d->error)) < 0)
			return -1;
	}
	if (!paths_usable_as(&t, paths, n, &bad)) {
		if (d->config_path != NULL) {
			return fail(d, "%s is not usable by run_user %s (is a parent folder closed "
				    "to it?); fix the permissions or set run_user = \"\"", bad, t.user);
		}
		log_warn("%s is not reachable for user %s (a parent folder is closed to it): "
			 "staying root for this run on the embedded default; use a config file "
			 "with run_user for production", bad, t.user);
		return 0;
	}
	if (privs_drop(&t, d->error, sizeof(d->error)) < 0)
		return -1;
	log_info("running as user %s", t.user);
	return 0;
}

static int open_ready_file(struct daemon *d)
{
	d->ready_fd = -1;
	if (d->ready_file == NULL)
		return 0;
	d->ready_fd = open(d->ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (d->ready_fd < 0)
		return fail(d, "--ready-file %s: %s", d->ready_file, strerror(errno));
	return 0;
}

static void announce_ready(struct daemon *d)
{
	char pid[32];

	log_info("mailfleetd ready: %s", d->listening[0] != '\0' ? d->listening : "(no listeners)");
	sd_notifyf(0, "READY=1\nSTATUS=listening: %s\nMAINPID=%ld", d->listening, (long)getpid());
	if (d->ready_fd >= 0) {
		int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		if (write(d->ready_fd, pid, (size_t)len) != len)
			log_warn("--ready-file %s: %s", d->ready_file, strerror(errno));
		close(d->ready_fd);
		d->ready_fd = -1;
	}
}

static void reload_tls(struct daemon *d)
{
	const char *error;

	if (tls_ctx_load(d->tls, &error) < 0)
		log_error("TLS reload failed, keeping the previous certificate: %s", error);
	else
		log_info("TLS certificate and key reloaded from %s", d->cfg.tls_cert);
}

/* Once a second: directory changes from mailfleetctl, watchdog, status. */
static void housekeeping(struct daemon *d, uint64_t *last_ping_ms, uint64_t *last_status_ms)
{
	const char *error;
	uint64_t now = mf_now_ms();

	if (directory_refresh(d->dir, &error) < 0)
		log_error("directory refresh: %s", error);
	if (d->watchdog_usec > 0) {
		uint64_t interval = d->watchdog_usec / 2000;
		if (d->cfg.watchdog_interval_secs > 0)
			interval = MF_MIN(interval, (uint64_t)d->cfg.watchdog_interval_secs * 1000);
		/* a wedged event loop stops the pings and systemd restarts us */
		if (now - *last_ping_ms >= interval &&
		    server_loops_alive(d->server, (unsigned)MF_MAX(interval, 5000u))) {
			sd_notify(0, "WATCHDOG=1");
			*last_ping_ms = now;
		}
	}
	if (now - *last_status_ms >= 10000) {
		sd_notifyf(0, "STATUS=%u connections; listening: %s",
			   server_connection_count(d->server), d->listening);
		*last_status_ms = now;
	}
}

static void run(struct daemon *d, const sigset_t *signals)
{
	struct timespec second = { .tv_sec = 1 };
	uint64_t last_ping = 0, last_status = mf_now_ms();

	if (sd_watchdog_enabled(0, &d->watchdog_usec) <= 0)
		d->watchdog_usec = 0;
	for (;;) {
		int sig = sigtimedwait(signals, NULL, &second);
		if (sig == SIGINT || sig == SIGTERM) {
			log_info("%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
			return;
		}
		if (sig == SIGHUP)
			reload_tls(d);
		housekeeping(d, &last_ping, &last_status);
	}
}

/* Every connection is a descriptor: take the hard limit as the soft one. */
static void raise_fd_limit(struct daemon *d)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)d->cfg.limits.connections_max)
		log_warn("open file limit %llu is below limits.connections_max %u: raise "
			 "LimitNOFILE / ulimit -n", (unsigned long long)rl.rlim_cur,
			 d->cfg.limits.connections_max);
}

static int start(struct daemon *d, const sigset_t *signals)
{
	const char *error;

	resolve_hostname(d);
	raise_fd_limit(d);
	d->ctx.config = &d->cfg;
	d->ctx.hostname = d->hostname;
	if (open_ready_file(d) < 0 || prepare_dirs(d) < 0 || open_directory(d) < 0 ||
	    open_store(d) < 0 || prepare_tls(d) < 0)
		return -1;
	d->ctx.store = d->store;
	d->ctx.directory = d->dir;
	d->watch = mailbox_watch_new(d->store);
	d->ctx.watch = d->watch;
	/* a share of the store workers: each stat may be a NAS round trip */
	if (mailbox_watch_start(d->watch, MF_MAX(d->cfg.worker_threads / 4, 1u), &error) < 0)
		return fail(d, "%s", error);
	if (bind_listeners(d) < 0 || drop_privileges(d) < 0)
		return -1;
	if (server_start(d->server, &error) < 0)
		return fail(d, "%s", error);
	return 0;
}

/* Returns false when store jobs did not finish in time (nothing freed then). */
static bool stop(struct daemon *d)
{
	if (d->server != NULL) {
		sd_notify(0, "STOPPING=1");
		server_stop(d->server);
		if (!server_wait(d->server, SHUTDOWN_WAIT_MS)) {
			log_error("store jobs still running after %u s; exiting without waiting",
				  SHUTDOWN_WAIT_MS / 1000);
			return false;
		}
		server_free(&d->server);
	}
	mailbox_watch_free(&d->watch);
	store_free(&d->store);
	directory_close(&d->dir);
	tls_ctx_free(&d->tls);
	if (d->ready_fd >= 0)
		close(d->ready_fd);
	config_free(&d->cfg);
	return true;
}

static int load_config(struct daemon *d)
{
	const char *error;

	config_defaults(&d->cfg);
	if (d->config_path != NULL && config_load(d->config_path, &d->cfg, &error) < 0) {
		fprintf(stderr, "mailfleetd: %s\n", error);
		config_free(&d->cfg);
		return -1;
	}
	if (log_set_level_name(d->cfg.log_level) < 0) {
		fprintf(stderr, "mailfleetd: unknown log_level %s\n", d->cfg.log_level);
		config_free(&d->cfg);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct daemon d;
	sigset_t signals;
	int ret;

	memset(&d, 0, sizeof(d));
	d.ready_fd = -1;
	ret = parse_args(&d, argc, argv);
	if (ret != 0)
		return ret > 0 ? 0 : 1;
	if (load_config(&d) < 0)
		return 1;
	if (d.check_only) {
		config_print(&d.cfg, STDOUT_FILENO);
		config_free(&d.cfg);
		return 0;
	}
	log_set_syslog_prefix(getenv("JOURNAL_STREAM") != NULL);
	/* every thread inherits this mask; only sigtimedwait() in run() sees them */
	sigemptyset(&signals);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (start(&d, &signals) < 0) {
		log_error("startup failed: %s", d.error);
		sd_notifyf(0, "STATUS=startup failed: %s", d.error);
		stop(&d);
		return 1;
	}
	announce_ready(&d);
	run(&d, &signals);
	if (!stop(&d))
		_exit(1);
	log_info("mailfleetd stopped");
	return 0;
}
