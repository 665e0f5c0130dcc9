/* test-directory.c: the directory: validation leaves the state unchanged,
 * snapshot + journal persistence (torn tail, corrupt line, compaction),
 * refresh across handles, alias resolution, password checks, record codec. */
#include "cluster/directory.h"
#include "tests/unit/test.h"

#include <crypt.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static char *make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path = mf_asprintf("%s/test-directory.XXXXXX", base != NULL ? base : "/tmp");

	if (mkdtemp(path) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return path;
}

static void remove_tree(const char *path)
{
	char *cmd = mf_asprintf("rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", path);
	free(cmd);
}

static struct directory *open_dir(const char *path)
{
	struct directory *dir = NULL;
	const char *error = NULL;

	if (directory_open(path, &dir, &error) < 0) {
		fprintf(stderr, "directory_open(%s): %s\n", path, error);
		exit(1);
	}
	return dir;
}

static char *test_hash(void)
{
	char *hash = dir_password_hash("secret", NULL);
	if (hash == NULL) {
		fprintf(stderr, "dir_password_hash failed\n");
		exit(1);
	}
	return hash;
}

static int change(struct directory *dir, bool commit, enum dir_change_type type,
		  const char *name, const char *value, uint64_t number)
{
	struct dir_change ch = { .type = type, .name = name, .value = value, .number = number };
	const char *error;
	int ret = commit ? directory_commit(dir, &ch, &error) : directory_apply(dir, &ch, &error);

	if (ret < 0 && getenv("TEST_VERBOSE") != NULL)
		printf("  error: %s\n", error);
	return ret;
}

static int apply_err(struct directory *dir, const struct dir_change *ch, const char *expect)
{
	const char *error = "";
	int ret = directory_apply(dir, ch, &error);

	if (ret == 0 || strstr(error, expect) == NULL) {
		fprintf(stderr, "  expected error with '%s', got ret=%d '%s'\n", expect, ret,
			ret == 0 ? "" : error);
		return 0;
	}
	return 1;
}

static unsigned strv_len(char **strv)
{
	unsigned n = 0;
	while (strv[n] != NULL)
		n++;
	return n;
}

static void test_validation(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	struct dir_domain_info dinfo;
	struct dir_user_info info;
	char **list;

	CHECK_INT_EQ(change(dir, false, DIR_CH_DOMAIN_ADD, "Example.TEST", NULL, 0), 0);
	CHECK_INT_EQ(change(dir, false, DIR_CH_USER_ADD, "Alice@Example.test", hash, 1000), 0);

	struct dir_change bad[] = {
		{ .type = DIR_CH_DOMAIN_ADD, .name = "example.test" },
		{ .type = DIR_CH_DOMAIN_ADD, .name = "-bad.test" },
		{ .type = DIR_CH_DOMAIN_ADD, .name = "bad..test" },
		{ .type = DIR_CH_DOMAIN_ADD, .name = "ba/d.test" },
		{ .type = DIR_CH_DOMAIN_ADD, .name = ".hidden" },
		{ .type = DIR_CH_USER_ADD, .name = "alice@example.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "bob@missing.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "bob+x@example.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = ".bob@example.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "b..ob@example.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "b/ob@example.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "bob@@example.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "bobexample.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "bob@example.test", .value = "{PLAIN}secret" },
		{ .type = DIR_CH_USER_ADD, .name = "bob@example.test", .value = "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69" },
		{ .type = DIR_CH_USER_ADD, .name = "bob@example.test", .value = "{CRYPT}$1$abcdefgh$0123456789abcdefghijk." },
		{ .type = DIR_CH_USER_ADD, .name = "bob@example.test", .value = "{CRYPT}abJnggxhB/yWI" },
		{ .type = DIR_CH_USER_ADD, .name = "bob@example.test", .value = "" },
		{ .type = DIR_CH_USER_DEL, .name = "nobody@example.test" },
		{ .type = DIR_CH_DOMAIN_DEL, .name = "example.test" },
		{ .type = DIR_CH_DOMAIN_DEL, .name = "missing.test" },
		{ .type = DIR_CH_ALIAS_ADD, .name = "alice@example.test", .value = "alice@example.test" },
		{ .type = DIR_CH_ALIAS_ADD, .name = "list@example.test", .value = "ghost@example.test" },
		{ .type = DIR_CH_USER_ARCHIVE, .name = "alice@example.test", .value = "bad policy\n" },
	};
	const char *expect[] = {
		"already exists", "must not begin or end with '-'", "1..63", "may contain only",
		"1..63", "already exists", "unknown domain 'missing.test'", "'+'",
		"must not begin or end with '.'", "'..'", "not allowed", "local@domain",
		"local@domain", "weak password scheme {PLAIN}", "weak password scheme {PLAIN-MD5}",
		"MD5 crypt", "DES crypt", "password hash is required", "unknown user",
		"still has 1 users", "unknown domain", "already exists as a user",
		"neither a user nor an alias", "archive policy",
	};
	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		test_checks++;
		if (!apply_err(dir, &bad[i], expect[i]))
			TEST_FAIL_AT(__FILE__, __LINE__, "bad change %zu accepted or wrong error", i);
	}
	/* nothing changed */
	list = directory_domain_list(dir);
	CHECK_INT_EQ(strv_len(list), 1);
	CHECK_STR_EQ(list[0], "example.test");
	dir_strv_free(&list);
	CHECK(list == NULL);
	CHECK_INT_EQ(directory_domain_get(dir, "example.test", &dinfo), 1);
	CHECK_INT_EQ(dinfo.user_count, 1);
	CHECK_INT_EQ(dinfo.alias_count, 0);
	CHECK_INT_EQ(directory_user_get(dir, "ALICE@example.test", &info), 1);
	CHECK_STR_EQ(info.address, "alice@example.test");
	CHECK_STR_EQ(info.localpart, "alice");
	CHECK_STR_EQ(info.domain, "example.test");
	CHECK_INT_EQ(info.quota_bytes, 1000);
	CHECK(info.imap_enabled && info.pop3_enabled);
	CHECK_INT_EQ(directory_user_get(dir, "bob@example.test", &info), 0);
	list = directory_alias_list(dir, NULL);
	CHECK_INT_EQ(strv_len(list), 0);
	dir_strv_free(&list);
	/* nor on disk: apply() does not persist */
	directory_close(&dir);
	CHECK(dir == NULL);
	dir = open_dir(path);
	CHECK_INT_EQ(directory_domain_get(dir, "example.test", &dinfo), 0);
	directory_close(&dir);
	free(hash);
	remove_tree(path);
	free(path);
}

static void populate(struct directory *dir, const char *hash)
{
	struct dir_change access = { .type = DIR_CH_USER_ACCESS, .name = "bob@example.test",
				     .imap_enabled = false, .pop3_enabled = true };
	const char *error;

	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_ADD, "example.test", NULL, 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_QUOTA, "example.test", NULL, 5000000), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_ADD, "other.test", NULL, 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_ADD, "alice@example.test", hash, 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_ADD, "bob@example.test", hash, 2000), 0);
	CHECK_INT_EQ(directory_commit(dir, &access, &error), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_ARCHIVE, "bob@example.test", "daily", 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_QUOTA, "alice@example.test", NULL, 3000), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_ALIAS_ADD, "team@example.test", "alice@example.test", 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_ALIAS_ADD, "team@example.test", "bob@example.test", 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_ALIAS_ADD, "all@other.test", "team@example.test", 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_ADD, "carol@other.test", hash, 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_DEL, "carol@other.test", NULL, 0), 0);
}

static void check_populated(struct directory *dir)
{
	struct dir_user_info info;
	struct dir_domain_info dinfo;
	char **members = NULL;

	CHECK_INT_EQ(directory_domain_get(dir, "example.test", &dinfo), 1);
	CHECK_INT_EQ(dinfo.quota_bytes, 5000000);
	CHECK_INT_EQ(dinfo.user_count, 2);
	CHECK_INT_EQ(dinfo.alias_count, 1);
	CHECK_INT_EQ(directory_user_get(dir, "alice@example.test", &info), 1);
	CHECK_INT_EQ(info.quota_bytes, 3000);
	CHECK_INT_EQ(info.domain_quota_bytes, 5000000);
	CHECK_INT_EQ(directory_user_get(dir, "bob@example.test", &info), 1);
	CHECK_INT_EQ(info.quota_bytes, 2000);
	CHECK(!info.imap_enabled && info.pop3_enabled);
	CHECK_STR_EQ(info.archive_policy, "daily");
	CHECK_INT_EQ(directory_user_get(dir, "carol@other.test", &info), 0);
	CHECK_INT_EQ(directory_alias_get(dir, "team@example.test", &members), 1);
	if (members != NULL) {
		CHECK_INT_EQ(strv_len(members), 2);
		CHECK_STR_EQ(members[0], "alice@example.test");
		CHECK_STR_EQ(members[1], "bob@example.test");
		dir_strv_free(&members);
	}
	CHECK_INT_EQ(directory_alias_get(dir, "all@other.test", &members), 1);
	dir_strv_free(&members);
}

static off_t file_size(const char *folder, const char *name)
{
	char *path = mf_asprintf("%s/%s", folder, name);
	struct stat st;
	off_t size = stat(path, &st) < 0 ? -1 : st.st_size;

	free(path);
	return size;
}

static void append_raw(const char *folder, const char *text)
{
	char *path = mf_asprintf("%s/journal", folder);
	int fd = open(path, O_WRONLY | O_APPEND);

	CHECK(fd >= 0);
	CHECK_INT_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
	close(fd);
	free(path);
}

static void test_persistence(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);

	populate(dir, hash);
	check_populated(dir);
	CHECK_INT_EQ(file_size(path, "snapshot"), -1);  /* journal only so far */
	directory_close(&dir);
	dir = open_dir(path);
	check_populated(dir);
	/* compaction: a snapshot appears, the journal starts again */
	directory_set_compact_threshold(dir, 3);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_QUOTA, "alice@example.test", NULL, 3000), 0);
	CHECK(file_size(path, "snapshot") > 0);
	CHECK_INT_EQ(file_size(path, "journal"), (long long)strlen("v1\tjournal\t1\n"));
	directory_close(&dir);
	dir = open_dir(path);
	check_populated(dir);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_QUOTA, "alice@example.test", NULL, 4000), 0);
	directory_close(&dir);
	dir = open_dir(path);
	struct dir_user_info info;
	CHECK_INT_EQ(directory_user_get(dir, "alice@example.test", &info), 1);
	CHECK_INT_EQ(info.quota_bytes, 4000);
	directory_close(&dir);
	free(hash);
	remove_tree(path);
	free(path);
}

static void test_empty_snapshot(void)
{
	char *path = make_tmpdir();
	struct directory *dir = open_dir(path);
	struct dir_domain_info dinfo;

	directory_set_compact_threshold(dir, 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_ADD, "a.test", NULL, 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_DEL, "a.test", NULL, 0), 0);
	CHECK_INT_EQ(file_size(path, "snapshot"), (long long)strlen("v1\tsnapshot\t2\nv1\tend\t0\n"));
	directory_close(&dir);
	dir = open_dir(path);
	CHECK_INT_EQ(directory_domain_get(dir, "a.test", &dinfo), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_ADD, "b.test", NULL, 0), 0);
	directory_close(&dir);
	/* a snapshot cut short is refused, not half loaded */
	char *snap = mf_asprintf("%s/snapshot", path);
	CHECK_INT_EQ(truncate(snap, file_size(path, "snapshot") - 3), 0);
	const char *error = NULL;
	CHECK_INT_EQ(directory_open(path, &dir, &error), -1);
	CHECK(error != NULL && strstr(error, "truncated") != NULL);
	free(snap);
	remove_tree(path);
	free(path);
}

static void test_interrupted_compaction(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	char *journal = mf_asprintf("%s/journal", path), *saved = mf_asprintf("%s/saved", path);
	char *cmd;

	populate(dir, hash);
	directory_close(&dir);
	/* keep the generation-0 journal, compact, then put the old journal back:
	 * as if the process died between snapshot and journal rename */
	cmd = mf_asprintf("cp '%s' '%s'", journal, saved);
	CHECK_INT_EQ(system(cmd), 0);
	free(cmd);
	dir = open_dir(path);
	directory_set_compact_threshold(dir, 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_QUOTA, "alice@example.test", NULL, 3000), 0);
	directory_close(&dir);
	CHECK_INT_EQ(rename(saved, journal), 0);
	dir = open_dir(path);   /* the stale journal is skipped, not replayed twice */
	check_populated(dir);
	CHECK_INT_EQ(file_size(path, "journal"), (long long)strlen("v1\tjournal\t1\n"));
	directory_close(&dir);
	free(journal);
	free(saved);
	free(hash);
	remove_tree(path);
	free(path);
}

static void test_torn_and_corrupt_journal(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	const char *error = NULL;
	off_t size;

	populate(dir, hash);
	directory_close(&dir);
	size = file_size(path, "journal");
	append_raw(path, "v1\tuser_add\tdave@example.test\t{SHA512-CR");
	dir = open_dir(path);
	check_populated(dir);
	CHECK_INT_EQ(file_size(path, "journal"), size);   /* truncated away */
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_ADD, "dave@example.test", hash, 0), 0);
	directory_close(&dir);
	dir = open_dir(path);
	struct dir_user_info info;
	CHECK_INT_EQ(directory_user_get(dir, "dave@example.test", &info), 1);
	directory_close(&dir);

	/* a corrupt line followed by a good one is an error naming the line */
	append_raw(path, "v1\tuser_quota\tdave@example.test\tlots\n");
	append_raw(path, "v1\tuser_quota\tdave@example.test\t5\n");
	CHECK_INT_EQ(directory_open(path, &dir, &error), -1);
	CHECK(dir == NULL);
	CHECK(error != NULL && strstr(error, "journal: line 16") != NULL);
	CHECK(error != NULL && strstr(error, "invalid number") != NULL);
	if (error != NULL && getenv("TEST_VERBOSE") != NULL)
		printf("  %s\n", error);
	free(hash);
	remove_tree(path);
	free(path);
}

static void test_refresh_other_handle(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *a = open_dir(path), *b = open_dir(path);
	struct dir_user_info info;
	const char *error;

	populate(a, hash);
	CHECK_INT_EQ(directory_user_get(b, "alice@example.test", &info), 0);
	CHECK_INT_EQ(directory_refresh(b, &error), 0);
	check_populated(b);
	/* b commits on top of a's records: its commit first catches up */
	CHECK_INT_EQ(change(b, true, DIR_CH_USER_ADD, "erin@other.test", hash, 0), 0);
	CHECK_INT_EQ(change(a, true, DIR_CH_USER_ADD, "erin@other.test", hash, 0), -1);
	CHECK_INT_EQ(directory_user_get(a, "erin@other.test", &info), 1);
	/* a compacts: b notices the new journal and reloads */
	directory_set_compact_threshold(a, 0);
	CHECK_INT_EQ(change(a, true, DIR_CH_USER_QUOTA, "erin@other.test", NULL, 77), 0);
	CHECK_INT_EQ(change(a, true, DIR_CH_USER_QUOTA, "bob@example.test", NULL, 2000), 0);
	CHECK_INT_EQ(directory_refresh(b, &error), 0);
	CHECK_INT_EQ(directory_user_get(b, "erin@other.test", &info), 1);
	CHECK_INT_EQ(info.quota_bytes, 77);
	check_populated(b);
	CHECK_INT_EQ(directory_refresh(b, &error), 0);   /* nothing new */
	directory_close(&a);
	directory_close(&b);
	free(hash);
	remove_tree(path);
	free(path);
}

static void test_resolve(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	struct dir_user_info users[4];
	char detail[64];
	const char *error;

	populate(dir, hash);
	CHECK_INT_EQ(directory_resolve(dir, "Bob+Lists@example.test", users, 4, detail,
				       sizeof(detail), &error), 1);
	CHECK_STR_EQ(users[0].address, "bob@example.test");
	CHECK_STR_EQ(detail, "Lists");
	CHECK_INT_EQ(directory_resolve(dir, "alice@example.test", users, 4, detail,
				       sizeof(detail), &error), 1);
	CHECK_STR_EQ(detail, "");
	CHECK_INT_EQ(directory_resolve(dir, "nobody@example.test", users, 4, detail,
				       sizeof(detail), &error), 0);
	CHECK_INT_EQ(directory_resolve(dir, "nobody+x@example.test", users, 4, detail,
				       sizeof(detail), &error), 0);
	/* nested alias with a loop and a duplicate member */
	CHECK_INT_EQ(change(dir, true, DIR_CH_ALIAS_ADD, "team@example.test", "all@other.test", 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_ALIAS_ADD, "all@other.test", "alice@example.test", 0), 0);
	CHECK_INT_EQ(directory_resolve(dir, "ALL@other.test", users, 4, detail,
				       sizeof(detail), &error), 2);
	CHECK_STR_EQ(users[0].address, "alice@example.test");
	CHECK_STR_EQ(users[1].address, "bob@example.test");
	CHECK_INT_EQ(directory_resolve(dir, "team+x@example.test", users, 4, detail,
				       sizeof(detail), &error), 2);
	CHECK_STR_EQ(detail, "x");
	CHECK_INT_EQ(directory_resolve(dir, "team@example.test", users, 1, detail,
				       sizeof(detail), &error), -1);
	/* deleting a user removes it from the aliases */
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_DEL, "bob@example.test", NULL, 0), 0);
	CHECK_INT_EQ(directory_resolve(dir, "team@example.test", users, 4, detail,
				       sizeof(detail), &error), 1);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_DEL, "alice@example.test", NULL, 0), 0);
	char **list = directory_alias_list(dir, NULL);
	CHECK_INT_EQ(strv_len(list), 2);   /* the loop is left: each has the other */
	dir_strv_free(&list);
	CHECK_INT_EQ(directory_resolve(dir, "team@example.test", users, 4, detail,
				       sizeof(detail), &error), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_ALIAS_DEL, "team@example.test", "all@other.test", 0), 0);
	list = directory_alias_list(dir, NULL);
	CHECK_INT_EQ(strv_len(list), 0);   /* team emptied, so all emptied too */
	dir_strv_free(&list);
	CHECK_INT_EQ(change(dir, true, DIR_CH_DOMAIN_DEL, "other.test", NULL, 0), 0);
	directory_close(&dir);
	dir = open_dir(path);
	struct dir_domain_info dinfo;
	CHECK_INT_EQ(directory_domain_get(dir, "other.test", &dinfo), 0);
	CHECK_INT_EQ(directory_domain_get(dir, "example.test", &dinfo), 1);
	CHECK_INT_EQ(dinfo.user_count + dinfo.alias_count, 0);
	directory_close(&dir);
	free(hash);
	remove_tree(path);
	free(path);
}

static char *crypt_hash(const char *prefix, unsigned long count, const char *password)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *out;

	if (crypt_gensalt_rn(prefix, count, NULL, 0, salt, sizeof(salt)) == NULL)
		return NULL;
	out = crypt(password, salt);
	return out == NULL || out[0] == '*' ? NULL : mf_strdup(out);
}

static void test_auth(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	char *blf = crypt_hash("$2b$", 5, "blowfish"), *yes = crypt_hash("$y$", 0, "yes");
	struct dir_user_info info;
	char scheme[32];

	CHECK(blf != NULL && yes != NULL);
	CHECK(strncmp(hash, "{SHA512-CRYPT}$6$", 17) == 0);
	populate(dir, hash);
	CHECK_INT_EQ(directory_authenticate(dir, "alice@example.test", "secret", &info), 1);
	CHECK_STR_EQ(info.address, "alice@example.test");
	CHECK_INT_EQ(directory_authenticate(dir, "Alice@Example.Test", "secret", &info), 1);
	CHECK_INT_EQ(directory_authenticate(dir, "alice@example.test", "secreT", &info), 0);
	CHECK_INT_EQ(directory_authenticate(dir, "alice@example.test", "", &info), 0);
	CHECK_INT_EQ(directory_authenticate(dir, "nobody@example.test", "secret", &info), 0);

	char *blf_hash = mf_asprintf("{BLF-CRYPT}%s", blf != NULL ? blf : "");
	char *yes_hash = mf_asprintf("{CRYPT}%s", yes != NULL ? yes : "");
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_PASSWD, "alice@example.test", blf_hash, 0), 0);
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_PASSWD, "bob@example.test", yes_hash, 0), 0);
	CHECK_INT_EQ(directory_authenticate(dir, "alice@example.test", "blowfish", &info), 1);
	CHECK_INT_EQ(directory_authenticate(dir, "alice@example.test", "secret", &info), 0);
	CHECK_INT_EQ(directory_authenticate(dir, "bob@example.test", "yes", &info), 1);
	CHECK_INT_EQ(directory_authenticate(dir, "bob@example.test", "no", &info), 0);
	CHECK_INT_EQ(directory_user_password_scheme(dir, "alice@example.test", scheme, sizeof(scheme)), 1);
	CHECK_STR_EQ(scheme, "BLF-CRYPT");
	CHECK_INT_EQ(change(dir, true, DIR_CH_USER_PASSWD, "bob@example.test", "{MD5}x", 0), -1);
	CHECK_INT_EQ(directory_authenticate(dir, "bob@example.test", "yes", &info), 1);

	/* the other schemes dir_password_hash() makes */
	char *h = dir_password_hash("pw", "BLF-CRYPT");
	CHECK(h != NULL && strncmp(h, "{BLF-CRYPT}$2y$", 15) == 0);
	CHECK(h != NULL && dir_password_verify("pw", h) && !dir_password_verify("pW", h));
	free(h);
	h = dir_password_hash("pw", "YESCRYPT");
	CHECK(h != NULL && strncmp(h, "{YESCRYPT}$y$", 13) == 0);
	CHECK(h != NULL && dir_password_verify("pw", h));
	free(h);
	CHECK(dir_password_hash("pw", "PLAIN") == NULL);
	CHECK(!dir_password_scheme_ok("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
	CHECK(!dir_password_scheme_ok("{CLEARTEXT}secret"));
	CHECK(!dir_password_scheme_ok("{SHA512-CRYPT}$1$abcdefgh$0123456789abcdef"));
	CHECK(dir_password_scheme_ok(hash));
	/* a weak hash never verifies, even when crypt(3) would accept it */
	char *des = crypt_hash("", 0, "pw");
	if (des != NULL) {
		char *weak = mf_asprintf("{CRYPT}%s", des);
		CHECK(!dir_password_verify("pw", weak));
		free(weak);
		free(des);
	}
	free(blf_hash);
	free(yes_hash);
	free(blf);
	free(yes);
	directory_close(&dir);
	free(hash);
	remove_tree(path);
	free(path);
}

static bool change_equal(const struct dir_change *a, const struct dir_change *b)
{
	return a->type == b->type && strcmp(a->name, b->name) == 0 &&
		((a->value == NULL && b->value == NULL) ||
		 (a->value != NULL && b->value != NULL && strcmp(a->value, b->value) == 0)) &&
		a->number == b->number && a->imap_enabled == b->imap_enabled &&
		a->pop3_enabled == b->pop3_enabled;
}

static void test_codec(void)
{
	struct dir_change ch = { .type = DIR_CH_USER_ARCHIVE, .name = "a@b.c",
				 .value = "tab\there\nnl\\bs" }, out;
	const char *error;
	char *line, *storage;

	line = dir_change_encode(&ch);
	CHECK_STR_EQ(line, "v1\tuser_archive\ta@b.c\ttab\\there\\nnl\\\\bs");
	CHECK_INT_EQ(dir_change_decode(line, strlen(line), &out, &storage, &error), 0);
	CHECK(change_equal(&ch, &out));
	free(storage);
	free(line);
	ch = (struct dir_change){ .type = DIR_CH_USER_ACCESS, .name = "x@y", .imap_enabled = true };
	line = dir_change_encode(&ch);
	CHECK_STR_EQ(line, "v1\tuser_access\tx@y\t1\t0");
	free(line);
	ch = (struct dir_change){ .type = DIR_CH_USER_QUOTA, .name = "x@y", .number = UINT64_MAX };
	line = dir_change_encode(&ch);
	CHECK_INT_EQ(dir_change_decode(line, strlen(line), &out, &storage, &error), 0);
	CHECK(out.number == UINT64_MAX);
	free(storage);
	free(line);

	static const char *const bad[] = {
		"", "\n", "v2\tdomain_add\tx", "v1\tnope\tx", "v1\tdomain_add",
		"v1\tdomain_add\tx\ty", "v1\tdomain_add\t", "v1\tdomain_quota\tx\t-1",
		"v1\tdomain_quota\tx\t18446744073709551616", "v1\tdomain_quota\tx\t01",
		"v1\tuser_access\tx@y\t2\t0", "v1\tdomain_add\tx\\", "v1\tdomain_add\tx\\q",
		"v1\tdomain_add\ta\nb", "v1\tdomain_add\ta\rb", "v1\tdomain_quota\tx\t",
		"v1\t\t\t\t\t\t\t\t\t\t",
	};
	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		storage = (char *)"unchanged";
		error = NULL;
		test_checks++;
		if (dir_change_decode(bad[i], strlen(bad[i]), &out, &storage, &error) == 0 ||
		    error == NULL || storage != NULL)
			TEST_FAIL_AT(__FILE__, __LINE__, "bad record %zu accepted", i);
	}
	CHECK_INT_EQ(dir_change_decode("v1\tdomain_add\tx\0y", 17, &out, &storage, &error), -1);
	char *big = mf_malloc(DIR_RECORD_MAX + 100);
	memset(big, 'a', DIR_RECORD_MAX + 99);
	memcpy(big, "v1\tdomain_add\t", 14);
	CHECK_INT_EQ(dir_change_decode(big, DIR_RECORD_MAX + 99, &out, &storage, &error), -1);
	CHECK_STR_EQ(error, "record too long");
	big[DIR_RECORD_MAX + 99] = '\0';
	ch = (struct dir_change){ .type = DIR_CH_DOMAIN_ADD, .name = big + 14 };
	CHECK(dir_change_encode(&ch) == NULL);
	free(big);
}

static void test_batch(void)
{
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	struct dir_domain_info dinfo;
	unsigned failed = 99;
	const char *error;
	struct dir_change changes[] = {
		{ .type = DIR_CH_DOMAIN_ADD, .name = "batch.test" },
		{ .type = DIR_CH_USER_ADD, .name = "u1@batch.test", .value = hash },
		{ .type = DIR_CH_USER_ADD, .name = "u1@batch.test", .value = hash },
	};

	CHECK_INT_EQ(directory_commit_batch(dir, changes, 3, &failed, &error), -1);
	CHECK_INT_EQ(failed, 2);
	CHECK(strstr(error, "already exists") != NULL);
	CHECK_INT_EQ(directory_domain_get(dir, "batch.test", &dinfo), 0);
	changes[2].name = "u2@batch.test";
	CHECK_INT_EQ(directory_commit_batch(dir, changes, 3, &failed, &error), 0);
	directory_close(&dir);
	dir = open_dir(path);
	CHECK_INT_EQ(directory_domain_get(dir, "batch.test", &dinfo), 1);
	CHECK_INT_EQ(dinfo.user_count, 2);
	directory_close(&dir);
	free(hash);
	remove_tree(path);
	free(path);
}

struct reader_ctx {
	struct directory *dir;
	volatile bool stop;
	unsigned found;
};

static void *reader(void *context)
{
	struct reader_ctx *ctx = context;
	struct dir_user_info info;

	while (!ctx->stop) {
		if (directory_user_get(ctx->dir, "u0@many.test", &info) == 1)
			ctx->found++;
	}
	return NULL;
}

/* 100,000 users: built through one batch, persisted, reloaded, looked up
 * quickly, with concurrent readers during commits. */
static void test_many_users(void)
{
	enum { N = 100000 };
	char *path = make_tmpdir(), *hash = test_hash();
	struct directory *dir = open_dir(path);
	struct dir_change *changes = mf_calloc(N + 1, sizeof(*changes));
	char **names = mf_calloc(N, sizeof(char *));
	struct dir_user_info info;
	struct reader_ctx ctx = { .dir = dir };
	pthread_t threads[2];
	unsigned failed;
	const char *error;
	uint64_t start;

	changes[0] = (struct dir_change){ .type = DIR_CH_DOMAIN_ADD, .name = "many.test" };
	for (unsigned i = 0; i < N; i++) {
		names[i] = mf_asprintf("u%u@many.test", i);
		changes[i + 1] = (struct dir_change){ .type = DIR_CH_USER_ADD, .name = names[i],
						      .value = hash };
	}
	CHECK_INT_EQ(directory_commit_batch(dir, changes, N + 1, &failed, &error), 0);
	CHECK(file_size(path, "snapshot") > 0);   /* compacted: over 10,000 records */
	for (unsigned i = 0; i < MF_N_ELEMENTS(threads); i++)
		pthread_create(&threads[i], NULL, reader, &ctx);
	for (unsigned i = 0; i < 20; i++)
		CHECK_INT_EQ(change(dir, true, DIR_CH_USER_QUOTA, names[i], NULL, i + 1), 0);
	ctx.stop = true;
	for (unsigned i = 0; i < MF_N_ELEMENTS(threads); i++)
		pthread_join(threads[i], NULL);
	CHECK(ctx.found > 0);
	directory_close(&dir);
	dir = open_dir(path);
	start = mf_now_us();
	for (unsigned i = 0; i < N; i++) {
		if (directory_user_get(dir, names[(i * 7919u) % N], &info) != 1) {
			CHECK(false);
			break;
		}
	}
	CHECK(mf_now_us() - start < 5000000);   /* well under 50 us per lookup */
	CHECK_INT_EQ(directory_user_get(dir, names[19], &info), 1);
	CHECK_INT_EQ(info.quota_bytes, 20);
	directory_close(&dir);
	for (unsigned i = 0; i < N; i++)
		free(names[i]);
	free(names);
	free(changes);
	free(hash);
	remove_tree(path);
	free(path);
}

int main(void)
{
	test_run(test_validation);
	test_run(test_persistence);
	test_run(test_empty_snapshot);
	test_run(test_interrupted_compaction);
	test_run(test_torn_and_corrupt_journal);
	test_run(test_refresh_other_handle);
	test_run(test_resolve);
	test_run(test_auth);
	test_run(test_codec);
	test_run(test_batch);
	test_run(test_many_users);
	return test_exit();
}
