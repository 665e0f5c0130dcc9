/* test-io.c: io.h conformance for the mem and posix backends, plain and
 * wrapped in the fault injector, plus the fault injector itself. */
#include "tests/unit/io-conformance.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static char *tmp_root(void)
{
	const char *tmpdir = getenv("TMPDIR");
	char *tmpl = mf_asprintf("%s/mf-test-io-XXXXXX", tmpdir != NULL ? tmpdir : "/tmp");

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return tmpl;
}

static void rm_rf(const char *dir)
{
	char *cmd = mf_asprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

static void test_mem_conformance(void)
{
	struct mf_io *io = io_mem_new();

	CHECK_STR_EQ(io_backend_name(io), "mem");
	io_conformance_run(io, "base");
	io_free(&io);
	CHECK(io == NULL);
}

static void test_posix_conformance(void)
{
	char *root = tmp_root(), *sub = mf_asprintf("%s/new/root", root);
	struct mf_io *io;
	const char *error;

	/* the root is created when missing */
	CHECK_INT_EQ(io_posix_new(sub, &io, &error), 0);
	CHECK_STR_EQ(io_backend_name(io), "posix");
	io_conformance_run(io, "base");
	io_free(&io);
	CHECK_INT_EQ(io_new_from_location(sub, &io, &error), 0);
	CHECK_STR_EQ(io_backend_name(io), "posix");
	io_free(&io);
	rm_rf(root);
	free(sub);
	free(root);
}

static void test_fault_conformance(void)
{
	char *root = tmp_root();
	struct mf_io *inner, *io = io_fault_new(io_mem_new());
	const char *error;

	CHECK_STR_EQ(io_backend_name(io), "fault");
	io_conformance_run(io, "base");
	CHECK(io_fault_calls(io, IO_OP_WRITE) > 0);
	CHECK(io_fault_calls(io, IO_OP_RENAME) > 0);
	io_free(&io);
	CHECK_INT_EQ(io_posix_new(root, &inner, &error), 0);
	io = io_fault_new(inner);
	io_conformance_run(io, "base");
	io_free(&io);
	rm_rf(root);
	free(root);
}

static void test_fault_nth(void)
{
	struct mf_io *io = io_fault_new(io_mem_new());
	struct io_file *f;
	struct io_stat st;

	CHECK_INT_EQ(io_open(io, "f", IO_O_WRONLY | IO_O_CREAT, 0600, &f), 0);
	io_fault_set(io, IO_OP_WRITE, 2, ENOSPC, 0);
	CHECK_INT_EQ(io_write_all(f, "a", 1), 0);
	errno = 0;
	CHECK_INT_EQ(io_write_all(f, "b", 1), -1);
	CHECK_INT_EQ(errno, ENOSPC);
	CHECK_INT_EQ(io_write_all(f, "c", 1), 0); /* a fault fires once */
	CHECK_INT_EQ(io_fault_calls(io, IO_OP_WRITE), 3);
	io_fault_set(io, IO_OP_CLOSE, 1, EIO, 0);
	errno = 0;
	CHECK_INT_EQ(io_close(&f), -1);
	CHECK_INT_EQ(errno, EIO);
	CHECK(f == NULL);
	CHECK_INT_EQ(io_stat(io, "f", &st), 0);
	CHECK_INT_EQ(st.size, 2);
	/* cleared faults do not fire */
	io_fault_set(io, IO_OP_STAT, 1, EIO, 0);
	io_fault_set(io, IO_OP_STAT, 0, 0, 0);
	CHECK_INT_EQ(io_stat(io, "f", &st), 0);
	/* the failed call is not performed */
	io_fault_set(io, IO_OP_RENAME, 1, ESTALE, 0);
	errno = 0;
	CHECK_INT_EQ(io_rename(io, "f", "g"), -1);
	CHECK_INT_EQ(errno, ESTALE);
	CHECK_INT_EQ(io_stat(io, "f", &st), 0);
	CHECK_INT_EQ(io_rename(io, "f", "g"), 0);
	io_free(&io);
}

static void test_fault_stall(void)
{
	struct mf_io *io = io_fault_new(io_mem_new());
	struct io_stat st;

	io_fault_set(io, IO_OP_MKDIR, 1, EIO, 150);
	uint64_t start = mf_now_ms();
	CHECK_INT_EQ(io_mkdir(io, "d", 0700), -1);
	CHECK(mf_now_ms() - start >= 140);
	CHECK_INT_EQ(io_stat(io, "d", &st), -1);
	io_free(&io);
}

static void test_fault_parse(void)
{
	static const char *const bad[] = {
		"write", "write:1", "write:x:EIO", "write:1:EFOO", "frob:1:EIO",
		"write:1:EIO,", "write:1:EIO:5:6", "write:1:EIO:x", ",write:1:EIO",
		"write:99999999999:EIO",
	};
	struct mf_io *io = io_fault_new(io_mem_new()), *mem = io_mem_new();
	const char *error = NULL;
	struct io_file *f;

	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		error = NULL;
		if (io_fault_parse(io, bad[i], &error) != -1 || error == NULL)
			TEST_FAIL_AT(__FILE__, __LINE__, "accepted bad spec \"%s\"", bad[i]);
		test_checks++;
	}
	/* a bad spec configures nothing, not even its valid items */
	CHECK_INT_EQ(io_fault_parse(io, "open:1:EIO,write:1:EFOO", &error), -1);
	CHECK_INT_EQ(io_open(io, "x", IO_O_WRONLY | IO_O_CREAT, 0600, &f), 0);
	io_close(&f);
	CHECK_INT_EQ(io_fault_parse(io, "", &error), 0);
	CHECK_INT_EQ(io_fault_parse(io, "unlink:2:EROFS,mkdir:1:EDQUOT:10,open:1:EACCES", &error), 0);
	errno = 0;
	CHECK_INT_EQ(io_mkdir(io, "d", 0700), -1);
	CHECK_INT_EQ(errno, EDQUOT);
	errno = 0;
	CHECK_INT_EQ(io_open(io, "x", IO_O_RDONLY, 0, &f), -1);
	CHECK_INT_EQ(errno, EACCES);
	CHECK_INT_EQ(io_link(io, "x", "y"), 0);
	CHECK_INT_EQ(io_unlink(io, "y"), 0);
	errno = 0;
	CHECK_INT_EQ(io_unlink(io, "x"), -1);
	CHECK_INT_EQ(errno, EROFS);
	CHECK_INT_EQ(io_fault_parse(mem, "open:1:EIO", &error), -1);
	io_free(&io);
	io_free(&mem);
}

static void test_mem_unlink_open(void)
{
	struct mf_io *io = io_mem_new();
	struct io_file *f;
	char buf[8];

	CHECK_INT_EQ(io_open(io, "f", IO_O_RDWR | IO_O_CREAT, 0600, &f), 0);
	CHECK_INT_EQ(io_write_all(f, "abc", 3), 0);
	CHECK_INT_EQ(io_unlink(io, "f"), 0);
	CHECK_INT_EQ(io_pread(f, buf, sizeof(buf), 0), 3);
	CHECK(memcmp(buf, "abc", 3) == 0);
	CHECK_INT_EQ(io_close(&f), 0);
	/* directory rename rules */
	CHECK_INT_EQ(io_mkdir_parents(io, "a/b", 0700), 0);
	errno = 0;
	CHECK_INT_EQ(io_rename(io, "a", "a/b/c"), -1);
	CHECK_INT_EQ(errno, EINVAL);
	CHECK_INT_EQ(io_mkdir(io, "e", 0700), 0);
	CHECK_INT_EQ(io_rename(io, "a", "e"), 0);
	CHECK_INT_EQ(io_rmdir(io, "e/b"), 0);
	io_free(&io);
}

int main(void)
{
	test_run(test_mem_conformance);
	test_run(test_posix_conformance);
	test_run(test_fault_conformance);
	test_run(test_fault_nth);
	test_run(test_fault_stall);
	test_run(test_fault_parse);
	test_run(test_mem_unlink_open);
	return test_exit();
}
