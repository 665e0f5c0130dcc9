/* test-privs.c: user lookup errors, handing a state tree to the run user
 * (symlinks changed, never followed), and a privilege drop that cannot be
 * undone. The parts that need root are checked only when run as root (as
 * `make test` is on CI); lookups are checked always. */
#include "frontend/privs.h"
#include "tests/unit/test.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static void test_lookup(void)
{
	struct privs_target t;
	char error[256] = "";

	CHECK_INT_EQ(privs_lookup("no-such-user-mf", NULL, &t, error, sizeof(error)), -1);
	CHECK(strstr(error, "no-such-user-mf") != NULL);
	CHECK_INT_EQ(privs_lookup("root", NULL, &t, error, sizeof(error)), -1);
	CHECK(strstr(error, "root") != NULL);
	CHECK_INT_EQ(privs_lookup("mail", "no-such-group-mf", &t, error, sizeof(error)), -1);
	CHECK(strstr(error, "no-such-group-mf") != NULL);

	struct passwd *pw = getpwnam("mail");
	CHECK(pw != NULL);
	if (pw == NULL)
		return;
	CHECK_INT_EQ(privs_lookup("mail", NULL, &t, error, sizeof(error)), 0);
	CHECK_INT_EQ(t.uid, pw->pw_uid);
	CHECK_INT_EQ(t.gid, pw->pw_gid);
	CHECK_STR_EQ(t.user, "mail");
}

static void path_in(char *buf, size_t size, const char *base, const char *name)
{
	snprintf(buf, size, "%s/%s", base, name);
}

static void test_chown_tree(void)
{
	const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	char base[512], p[640], outside[640];
	struct privs_target t;
	char error[256];
	struct stat st;

	CHECK_INT_EQ(privs_lookup("mail", NULL, &t, error, sizeof(error)), 0);
	snprintf(base, sizeof(base), "%s/test-privs-%d", tmp, getpid());
	CHECK_INT_EQ(mkdir(base, 0755), 0);
	path_in(p, sizeof(p), base, "state");
	CHECK_INT_EQ(mkdir(p, 0700), 0);
	path_in(p, sizeof(p), base, "state/sub");
	CHECK_INT_EQ(mkdir(p, 0700), 0);
	path_in(p, sizeof(p), base, "state/sub/file");
	close(open(p, O_CREAT | O_WRONLY, 0600));
	path_in(outside, sizeof(outside), base, "outside");
	close(open(outside, O_CREAT | O_WRONLY, 0600));
	path_in(p, sizeof(p), base, "state/link");
	CHECK_INT_EQ(symlink(outside, p), 0);

	path_in(p, sizeof(p), base, "state");
	CHECK_INT_EQ(privs_chown_tree(p, &t, error, sizeof(error)), 0);
	path_in(p, sizeof(p), base, "state/sub/file");
	CHECK(stat(p, &st) == 0 && st.st_uid == t.uid && st.st_gid == t.gid);
	path_in(p, sizeof(p), base, "state/link");
	CHECK(lstat(p, &st) == 0 && st.st_uid == t.uid);
	/* the symlink's target outside the tree is untouched */
	CHECK(stat(outside, &st) == 0 && st.st_uid == 0);
	/* a missing path is fine */
	path_in(p, sizeof(p), base, "missing");
	CHECK_INT_EQ(privs_chown_tree(p, &t, error, sizeof(error)), 0);

	const char *names[] = { "state/link", "state/sub/file", "state/sub", "state", "outside" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		path_in(p, sizeof(p), base, names[i]);
		if (remove(p) < 0)
			CHECK(!"cleanup");
	}
	rmdir(base);
}

static void test_drop(void)
{
	struct privs_target t;
	char error[256];
	int status;

	CHECK_INT_EQ(privs_lookup("mail", NULL, &t, error, sizeof(error)), 0);
	pid_t pid = fork();
	if (pid == 0) {
		if (privs_drop(&t, error, sizeof(error)) < 0)
			_exit(10);
		if (getuid() != t.uid || geteuid() != t.uid || getgid() != t.gid)
			_exit(11);
		if (setuid(0) == 0 || seteuid(0) == 0)
			_exit(12);
		if (prctl(PR_GET_DUMPABLE) != 0)
			_exit(13);
		_exit(0);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	CHECK_INT_EQ(WEXITSTATUS(status), 0);
}

int main(void)
{
	test_run(test_lookup);
	if (geteuid() == 0) {
		test_run(test_chown_tree);
		test_run(test_drop);
	} else {
		printf("skip test_chown_tree, test_drop (not root)\n");
	}
	return test_exit();
}
