/* store-tool.c: a small CLI over io.h/store.h for testing a store location
 * (a directory or an nfs:// URL) from scripts, e.g. tests/test_store_nfs.py
 * against a real NFS server:
 *
 *   store-tool [--lz4] [--threads N] LOCATION conformance [BASE]
 *   store-tool [--lz4] [--threads N] [--usage-check] LOCATION deliver DOMAIN USER COUNT [SIZE]
 *   store-tool LOCATION usage DOMAIN USER     -> "<bytes> <messages>"
 *   store-tool LOCATION domain-usage DOMAIN   -> "<bytes>"
 *   store-tool LOCATION sync DOMAIN USER      -> "<uidvalidity> <nextuid> <count>"
 *   store-tool LOCATION read PATH             -> the message on stdout
 *
 * deliver reads every message back and compares it; it prints
 * "delivered <n> failed <m>" and exits non-zero when anything failed.
 * --usage-check asks for the user's quota usage before each delivery, as
 * the LMTP server does; --usage-recent MS does it with
 * store_user_usage_recent(MS). */
#include "store/store.h"
#include "store/uidlist.h"
#include "tests/unit/io-conformance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

struct options {
	bool lz4;
	bool usage_check;   /* store_user_usage() before each delivery, as LMTP does */
	int usage_recent_ms;  /* >= 0: store_user_usage_recent() instead */
	unsigned threads;
	const char *location;
};

struct deliver_job {
	struct store *store;
	bool usage_check;
	int usage_recent_ms;
	const char *domain, *user;
	unsigned first, count;
	size_t size;
	unsigned ok, failed;
};

static void make_message(unsigned n, size_t size, char *buf)
{
	int hdr = snprintf(buf, size + 1, "Subject: store-tool %u\r\n\r\n", n);

	for (size_t i = (size_t)hdr; i < size; i++)
		buf[i] = (i % 78 == 77) ? '\n' : (char)('a' + (i * 7 + n) % 26);
}

static bool deliver_one(struct deliver_job *j, unsigned n, char *buf)
{
	struct iovec iov = { .iov_base = buf, .iov_len = j->size };
	const char *error;
	char *name = NULL;
	unsigned char *data = NULL;
	size_t len = 0;

	make_message(n, j->size, buf);
	uint64_t bytes, msgs;
	if (j->usage_check && (j->usage_recent_ms >= 0 ?
		store_user_usage_recent(j->store, j->domain, j->user, (unsigned)j->usage_recent_ms, &bytes, &msgs) :
		store_user_usage(j->store, j->domain, j->user, &bytes, &msgs)) < 0) {
		fprintf(stderr, "usage %u: %s\n", n, strerror(errno));
		return false;
	}
	if (store_deliver(j->store, j->domain, j->user, NULL, &iov, 1, j->size, &name, &error) < 0) {
		fprintf(stderr, "deliver %u: %s: %s\n", n, error, strerror(errno));
		return false;
	}
	char *path = mf_asprintf("%s/%s/Maildir/new/%s", j->domain, j->user, name);
	bool ok = store_read_message(j->store, path, j->size + 1, &data, &len) == 0 &&
		len == j->size && memcmp(data, buf, len) == 0;
	if (!ok)
		fprintf(stderr, "read back %s: mismatch or %s\n", path, strerror(errno));
	free(data);
	free(path);
	free(name);
	return ok;
}

static void *deliver_thread(void *arg)
{
	struct deliver_job *j = arg;
	char *buf = mf_malloc(j->size + 64);

	for (unsigned i = 0; i < j->count; i++) {
		if (deliver_one(j, j->first + i, buf))
			j->ok++;
		else
			j->failed++;
	}
	free(buf);
	return NULL;
}

static int cmd_deliver(struct store *store, const struct options *opt, int argc, char **argv)
{
	if (argc < 3)
		return 2;
	unsigned count = (unsigned)strtoul(argv[2], NULL, 10), threads = opt->threads;
	size_t size = argc > 3 ? strtoul(argv[3], NULL, 10) : 2000;
	struct deliver_job jobs[64];
	pthread_t tids[64];
	unsigned ok = 0, failed = 0;

	if (size < 64 || size > 64 * 1024 * 1024 || threads == 0 || threads > 64)
		return 2;
	for (unsigned t = 0; t < threads; t++) {
		jobs[t] = (struct deliver_job){ .store = store, .domain = argv[0], .user = argv[1],
			.usage_check = opt->usage_check, .usage_recent_ms = opt->usage_recent_ms,
			.first = t * (count / threads), .size = size,
			.count = count / threads + (t == threads - 1 ? count % threads : 0) };
		pthread_create(&tids[t], NULL, deliver_thread, &jobs[t]);
	}
	for (unsigned t = 0; t < threads; t++) {
		pthread_join(tids[t], NULL);
		ok += jobs[t].ok;
		failed += jobs[t].failed;
	}
	printf("delivered %u failed %u\n", ok, failed);
	return failed == 0 && ok == count ? 0 : 1;
}

static int cmd_conformance(struct store *store, int argc, char **argv)
{
	char *base = argc > 0 ? mf_strdup(argv[0]) : mf_asprintf("conformance-%d", (int)getpid());

	io_conformance_run(store_io(store), base);
	free(base);
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures == 0 && test_checks > 0 ? 0 : 1;
}

static int cmd_sync(struct store *store, int argc, char **argv)
{
	struct uidlist *ul;
	const char *error;

	if (argc < 2)
		return 2;
	if (uidlist_sync_mailbox(store, argv[0], argv[1], NULL, &ul, &error) < 0) {
		fprintf(stderr, "sync: %s: %s\n", error, strerror(errno));
		return 1;
	}
	printf("%u %u %zu\n", ul->uid_validity, ul->next_uid, ul->count);
	for (size_t i = 1; i < ul->count; i++) {
		if (ul->recs[i].uid <= ul->recs[i - 1].uid) {
			fprintf(stderr, "UIDs not ascending\n");
			uidlist_free(&ul);
			return 1;
		}
	}
	uidlist_free(&ul);
	return 0;
}

static int cmd_other(struct store *store, const char *cmd, int argc, char **argv)
{
	uint64_t bytes = 0, msgs = 0;

	if (strcmp(cmd, "usage") == 0 && argc >= 2) {
		if (store_user_usage(store, argv[0], argv[1], &bytes, &msgs) < 0)
			return 1;
		printf("%llu %llu\n", (unsigned long long)bytes, (unsigned long long)msgs);
		return 0;
	}
	if (strcmp(cmd, "domain-usage") == 0 && argc >= 1) {
		if (store_domain_usage(store, argv[0], &bytes) < 0)
			return 1;
		printf("%llu\n", (unsigned long long)bytes);
		return 0;
	}
	if (strcmp(cmd, "read") == 0 && argc >= 1) {
		unsigned char *data;
		size_t len;
		if (store_read_message(store, argv[0], 256 * 1024 * 1024, &data, &len) < 0) {
			fprintf(stderr, "read: %s\n", strerror(errno));
			return 1;
		}
		fwrite(data, 1, len, stdout);
		free(data);
		return 0;
	}
	return 2;
}

static int run(const struct options *opt, const char *cmd, int argc, char **argv)
{
	struct store_settings set;
	struct mf_io *io;
	struct store *store;
	const char *error;

	if (io_new_from_location(opt->location, &io, &error) < 0) {
		fprintf(stderr, "%s: %s\n", opt->location, error);
		return 1;
	}
	store_settings_defaults(&set);
	set.compress_lz4 = opt->lz4;
	if (store_new(io, &set, &store, &error) < 0) {
		fprintf(stderr, "store: %s\n", error);
		io_free(&io);
		return 1;
	}
	int ret;
	if (strcmp(cmd, "conformance") == 0)
		ret = cmd_conformance(store, argc, argv);
	else if (strcmp(cmd, "deliver") == 0)
		ret = cmd_deliver(store, opt, argc, argv);
	else if (strcmp(cmd, "sync") == 0)
		ret = cmd_sync(store, argc, argv);
	else
		ret = cmd_other(store, cmd, argc, argv);
	store_free(&store);
	return ret;
}

int main(int argc, char **argv)
{
	struct options opt = { .threads = 1, .usage_recent_ms = -1 };
	int i = 1;

	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--lz4") == 0)
			opt.lz4 = true;
		else if (strcmp(argv[i], "--usage-check") == 0)
			opt.usage_check = true;
		else if (strcmp(argv[i], "--usage-recent") == 0 && i + 1 < argc) {
			opt.usage_check = true;
			opt.usage_recent_ms = atoi(argv[++i]);
		}
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			opt.threads = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			break;
	}
	if (argc - i < 2) {
		fprintf(stderr, "usage: store-tool [--lz4] [--threads N] [--usage-check] LOCATION COMMAND [ARGS]\n");
		return 2;
	}
	opt.location = argv[i];
	int ret = run(&opt, argv[i + 1], argc - i - 2, argv + i + 2);
	if (ret == 2)
		fprintf(stderr, "store-tool: bad command or arguments\n");
	return ret;
}
