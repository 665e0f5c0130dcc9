/* test-config.c: the embedded default, every setting, errors that name file
 * and line, range checks, listeners replacing the default list, and
 * config_print() output that reads back to the same configuration. */
#include "frontend/config.h"
#include "tests/unit/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static const char full_config[] =
	"hostname = \"node1.example.test\";\n"
	"run_user = \"nobody\";\n"
	"run_group = \"nogroup\";\n"
	"log_level = \"debug\";\n"
	"watchdog_interval = 7;\n"
	"store = { location = \"nfs://10.0.0.1/export?version=3\"; compress_lz4 = true;\n"
	"  fsync = false; lock_timeout = 60; fault_inject = \"write:3:EIO\"; };\n"
	"directory = { path = \"/var/lib/mailfleet/directory\"; create_demo_user = false; };\n"
	"tls = { cert = \"/etc/c.pem\"; key = \"/etc/k.pem\"; self_signed = false; };\n"
	"threads = { event = 3; worker = 5; };\n"
	"limits = { line_max = 1024; message_size_max = \"10M\"; rcpt_max = 50;\n"
	"  connections_max = 300; connections_per_ip = 20; idle_timeout = 60;\n"
	"  data_timeout = 30; output_queue_max = \"64K\"; bad_commands_max = 3; };\n"
	"lmtp = { quota_temporary = true; };\n"
	"listeners = (\n"
	"  { protocol = \"lmtp\"; address = \"::1\"; port = 24; },\n"
	"  { protocol = \"lmtp\"; path = \"/run/mailfleet/lmtp.sock\"; },\n"
	"  { protocol = \"imap\"; port = 993; tls = true; }\n"
	");\n";

static void test_defaults(void)
{
	struct mf_config cfg;

	config_defaults(&cfg);
	CHECK_STR_EQ(cfg.store_location, "./var/mail");
	CHECK_STR_EQ(cfg.directory_path, "./var/directory");
	CHECK(cfg.create_demo_user);
	CHECK_STR_EQ(cfg.tls_cert, "./var/tls/cert.pem");
	CHECK_STR_EQ(cfg.tls_key, "./var/tls/key.pem");
	CHECK(cfg.tls_self_signed);
	CHECK_STR_EQ(cfg.run_user, "mail");
	CHECK_STR_EQ(cfg.log_level, "info");
	CHECK(cfg.hostname == NULL);
	CHECK(cfg.store_fsync);
	CHECK_INT_EQ(cfg.limits.line_max, 8192);
	CHECK_INT_EQ(cfg.limits.message_size_max, 50 * 1024 * 1024);
	CHECK_INT_EQ(cfg.limits.rcpt_max, 1000);
	CHECK_INT_EQ(cfg.limits.connections_max, 20000);
	CHECK_INT_EQ(cfg.limits.connections_per_ip, 200);
	CHECK_INT_EQ(cfg.limits.idle_timeout_secs, 300);
	CHECK_INT_EQ(cfg.limits.output_queue_max, 1024 * 1024);
	CHECK_INT_EQ(cfg.limits.bad_commands_max, 10);
	CHECK_INT_EQ(cfg.worker_threads, 16);
	CHECK_INT_EQ(cfg.listener_count, 6);

	const unsigned ports[] = { 1143, 1993, 1110, 1995, 2424, 8080 };
	const bool tls[] = { false, true, false, true, false, false };
	for (unsigned i = 0; i < 6 && i < cfg.listener_count; i++) {
		CHECK_INT_EQ(cfg.listeners[i].port, ports[i]);
		CHECK_INT_EQ(cfg.listeners[i].tls, tls[i]);
		CHECK_STR_EQ(cfg.listeners[i].address, "127.0.0.1");
	}
	CHECK_INT_EQ(cfg.listeners[4].protocol, MF_PROTO_LMTP);
	CHECK_INT_EQ(cfg.listeners[5].protocol, MF_PROTO_HEALTH);
	config_free(&cfg);
}

static void test_every_setting(void)
{
	struct mf_config cfg;
	const char *error = NULL;

	config_defaults(&cfg);
	CHECK_INT_EQ(config_parse_string(full_config, &cfg, &error), 0);
	if (error != NULL)
		fprintf(stderr, "%s\n", error);
	CHECK_STR_EQ(cfg.hostname, "node1.example.test");
	CHECK_STR_EQ(cfg.run_user, "nobody");
	CHECK_STR_EQ(cfg.run_group, "nogroup");
	CHECK_STR_EQ(cfg.log_level, "debug");
	CHECK_INT_EQ(cfg.watchdog_interval_secs, 7);
	CHECK_STR_EQ(cfg.store_location, "nfs://10.0.0.1/export?version=3");
	CHECK(cfg.store_compress_lz4);
	CHECK(!cfg.store_fsync);
	CHECK_INT_EQ(cfg.store_lock_timeout_secs, 60);
	CHECK_STR_EQ(cfg.store_fault_inject, "write:3:EIO");
	CHECK_STR_EQ(cfg.directory_path, "/var/lib/mailfleet/directory");
	CHECK(!cfg.create_demo_user);
	CHECK_STR_EQ(cfg.tls_cert, "/etc/c.pem");
	CHECK_STR_EQ(cfg.tls_key, "/etc/k.pem");
	CHECK(!cfg.tls_self_signed);
	CHECK_INT_EQ(cfg.event_threads, 3);
	CHECK_INT_EQ(cfg.worker_threads, 5);
	CHECK_INT_EQ(cfg.limits.line_max, 1024);
	CHECK_INT_EQ(cfg.limits.message_size_max, 10 * 1024 * 1024);
	CHECK_INT_EQ(cfg.limits.rcpt_max, 50);
	CHECK_INT_EQ(cfg.limits.connections_max, 300);
	CHECK_INT_EQ(cfg.limits.connections_per_ip, 20);
	CHECK_INT_EQ(cfg.limits.idle_timeout_secs, 60);
	CHECK_INT_EQ(cfg.limits.data_timeout_secs, 30);
	CHECK_INT_EQ(cfg.limits.output_queue_max, 64 * 1024);
	CHECK_INT_EQ(cfg.limits.bad_commands_max, 3);
	CHECK(cfg.lmtp_quota_temporary);
	CHECK_STR_EQ(cfg.source, "(string)");

	/* listeners replace the default list */
	CHECK_INT_EQ(cfg.listener_count, 3);
	CHECK_INT_EQ(cfg.listeners[0].protocol, MF_PROTO_LMTP);
	CHECK_STR_EQ(cfg.listeners[0].address, "::1");
	CHECK_INT_EQ(cfg.listeners[0].port, 24);
	CHECK(cfg.listeners[1].address == NULL);
	CHECK_STR_EQ(cfg.listeners[1].path, "/run/mailfleet/lmtp.sock");
	CHECK_INT_EQ(cfg.listeners[2].protocol, MF_PROTO_IMAP);
	CHECK_STR_EQ(cfg.listeners[2].address, "*");
	CHECK(cfg.listeners[2].tls);

	char desc[128];
	CHECK_STR_EQ(config_listener_describe(&cfg.listeners[0], desc, sizeof(desc)), "lmtp [::1]:24");
	CHECK_STR_EQ(config_listener_describe(&cfg.listeners[1], desc, sizeof(desc)),
		     "lmtp unix:/run/mailfleet/lmtp.sock");
	CHECK_STR_EQ(config_listener_describe(&cfg.listeners[2], desc, sizeof(desc)), "imaps *:993");
	config_free(&cfg);
}

static void test_partial_keeps_defaults(void)
{
	struct mf_config cfg;
	const char *error = NULL;

	config_defaults(&cfg);
	CHECK_INT_EQ(config_parse_string("limits = { line_max = 2048; };\nhostname = \"\";\n",
					 &cfg, &error), 0);
	CHECK_INT_EQ(cfg.limits.line_max, 2048);
	CHECK_INT_EQ(cfg.limits.rcpt_max, 1000);
	CHECK_INT_EQ(cfg.listener_count, 6);
	CHECK(cfg.hostname == NULL);
	/* a second load starts again from the embedded default */
	CHECK_INT_EQ(config_parse_string("run_user = \"\";\n", &cfg, &error), 0);
	CHECK_INT_EQ(cfg.limits.line_max, 8192);
	CHECK(cfg.run_user == NULL);
	/* an empty listener list is allowed and replaces the default */
	CHECK_INT_EQ(config_parse_string("listeners = ();\n", &cfg, &error), 0);
	CHECK_INT_EQ(cfg.listener_count, 0);
	config_free(&cfg);
}

struct bad_case {
	const char *text;
	int line;
	const char *needle;
};

static const struct bad_case bad_cases[] = {
	{ "hostname = \"a\";\nbogus = 1;\n", 2, "unknown setting bogus" },
	{ "store = {\n location = \"x\";\n colour = 1; };\n", 3, "unknown setting store.colour" },
	{ "limits = {\n  line_max = 10;\n};\n", 2, "limits.line_max: 10 is out of range" },
	{ "limits = { message_size_max = \"12Q\"; };\n", 1, "expected a size" },
	{ "limits = { idle_timeout = 0; };\n", 1, "out of range" },
	{ "limits = { output_queue_max = 100; };\n", 1, "out of range" },
	{ "threads = { worker = 0; };\n", 1, "out of range" },
	{ "store = { fsync = 1; };\n", 1, "store.fsync: expected true or false" },
	{ "store = { location = 5; };\n", 1, "store.location: expected a string" },
	{ "store = { location = \"\"; };\n", 1, "must not be empty" },
	{ "store = 5;\n", 1, "store: expected a group" },
	{ "log_level = \"loud\";\n", 1, "log_level" },
	{ "hostname = \"bad/host\";\n", 1, "not a host name" },
	{ "run_user = \"a b\";\n", 1, "not a user name" },
	{ "\n\nlisteners = ( { protocol = \"lmtp\"; port = 70000; } );\n", 3,
	  "listeners.port: 70000 is out of range (0..65535)" },
	{ "listeners = ( { protocol = \"smtp\"; port = 25; } );\n", 1, "listeners.protocol" },
	{ "listeners = ( { port = 25; } );\n", 1, "without protocol" },
	{ "listeners = ( { protocol = \"lmtp\"; } );\n", 1, "needs a port" },
	{ "listeners = ( { protocol = \"lmtp\"; address = \"localhost\"; port = 24; } );\n", 1,
	  "not \"*\" or an IP address" },
	{ "listeners = ( { protocol = \"lmtp\"; path = \"/x\"; port = 24; } );\n", 1,
	  "path excludes" },
	{ "listeners = ( { protocol = \"lmtp\"; port = 24; colour = 1; } );\n", 1,
	  "unknown setting listeners.colour" },
	{ "listeners = ( { protocol = \"lmtp\"; port = 24; }, { protocol = \"imap\"; port = 24; } );\n",
	  0, "same address" },
	{ "limits = { connections_max = 10; connections_per_ip = 20; };\n", 0, "connections_per_ip" },
	{ "hostname = \"a\";\nlog_level = ;\n", 2, "syntax error" },
	{ "@include \"/etc/passwd\"\n", 0, "@include" },
};

static void test_errors(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct mf_config cfg;
		const char *error = NULL;
		char prefix[64];

		config_defaults(&cfg);
		CHECK_INT_EQ(config_parse_string(bad_cases[i].text, &cfg, &error), -1);
		CHECK(error != NULL);
		if (error == NULL) {
			config_free(&cfg);
			continue;
		}
		snprintf(prefix, sizeof(prefix), "(string):%d: ", bad_cases[i].line);
		if (strncmp(error, prefix, strlen(prefix)) != 0 ||
		    strstr(error, bad_cases[i].needle) == NULL) {
			fprintf(stderr, "case %zu: got \"%s\", expected \"%s...%s\"\n", i, error,
				prefix, bad_cases[i].needle);
			CHECK(!"error text");
		}
		/* a failed load leaves the configuration unchanged */
		CHECK_INT_EQ(cfg.limits.line_max, 8192);
		CHECK_INT_EQ(cfg.listener_count, 6);
		config_free(&cfg);
	}
}

static char *write_temp(const char *text)
{
	const char *tmpdir = getenv("TMPDIR");
	char *path = malloc(4096);
	snprintf(path, 4096, "%s/test-config-XXXXXX", tmpdir != NULL ? tmpdir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

static void test_file_errors(void)
{
	struct mf_config cfg;
	const char *error = NULL;
	char expect[4200];
	char *path = write_temp("# comment\nlog_level = \"info\";\nthreads = { worker = 2000; };\n");

	config_defaults(&cfg);
	CHECK_INT_EQ(config_load(path, &cfg, &error), -1);
	snprintf(expect, sizeof(expect), "%s:3: threads.worker: 2000 is out of range", path);
	CHECK(error != NULL && strncmp(error, expect, strlen(expect)) == 0);
	unlink(path);
	free(path);

	path = write_temp("log_level = \"info\";\nstore = { location = ; };\n");
	CHECK_INT_EQ(config_load(path, &cfg, &error), -1);
	snprintf(expect, sizeof(expect), "%s:2: ", path);
	CHECK(error != NULL && strncmp(error, expect, strlen(expect)) == 0);
	unlink(path);
	free(path);

	CHECK_INT_EQ(config_load("/nonexistent/mailfleet.conf", &cfg, &error), -1);
	CHECK(error != NULL && strstr(error, "/nonexistent/mailfleet.conf") != NULL);

	path = write_temp("limits = { rcpt_max = 7; };\n");
	CHECK_INT_EQ(config_load(path, &cfg, &error), 0);
	CHECK_INT_EQ(cfg.limits.rcpt_max, 7);
	CHECK_STR_EQ(cfg.source, path);
	unlink(path);
	free(path);
	config_free(&cfg);
}

static char *print_to_string(const struct mf_config *cfg)
{
	char *path = write_temp("");
	FILE *f = fopen(path, "w+");
	config_print(cfg, fileno(f));
	fflush(f);
	long len = ftell(f);
	char *text = calloc(1, (size_t)len + 1);
	rewind(f);
	if (fread(text, 1, (size_t)len, f) != (size_t)len)
		abort();
	fclose(f);
	unlink(path);
	free(path);
	return text;
}

/* The printed configuration parses back to an identical printout. */
static void test_print_round_trip(void)
{
	struct mf_config cfg, again;
	const char *error = NULL;

	config_defaults(&cfg);
	CHECK_INT_EQ(config_parse_string(full_config, &cfg, &error), 0);
	char *first = print_to_string(&cfg);
	config_defaults(&again);
	CHECK_INT_EQ(config_parse_string(first, &again, &error), 0);
	char *second = print_to_string(&again);
	/* only the "from (string)" comment line may differ: both are from strings */
	CHECK_STR_EQ(second, first);
	CHECK(strstr(first, "message_size_max = 10485760;") != NULL);
	CHECK(strstr(first, "path = \"/run/mailfleet/lmtp.sock\"") != NULL);
	free(first);
	free(second);
	config_free(&again);

	/* and the embedded default, too */
	config_free(&cfg);
	config_defaults(&cfg);
	first = print_to_string(&cfg);
	config_defaults(&again);
	CHECK_INT_EQ(config_parse_string(first, &again, &error), 0);
	CHECK_INT_EQ(again.listener_count, 6);
	CHECK_STR_EQ(again.run_user, "mail");
	CHECK(again.hostname == NULL);
	free(first);
	config_free(&again);
	config_free(&cfg);
}

/* The annotated example shipped in packaging/ stays valid. */
static void test_packaged_example(void)
{
	struct mf_config cfg;
	const char *error = NULL;

	config_defaults(&cfg);
	CHECK_INT_EQ(config_load("packaging/mailfleet.conf", &cfg, &error), 0);
	if (error != NULL)
		fprintf(stderr, "%s\n", error);
	CHECK_INT_EQ(cfg.listener_count, 7);
	CHECK_STR_EQ(cfg.listeners[5].path, "/run/mailfleet/lmtp.sock");
	CHECK_STR_EQ(cfg.directory_path, "/var/lib/mailfleet/directory");
	CHECK(!cfg.create_demo_user);
	CHECK_INT_EQ(cfg.limits.message_size_max, 50 * 1024 * 1024);
	config_free(&cfg);
}

int main(void)
{
	test_run(test_defaults);
	test_run(test_every_setting);
	test_run(test_partial_keeps_defaults);
	test_run(test_errors);
	test_run(test_file_errors);
	test_run(test_print_round_trip);
	test_run(test_packaged_example);
	return test_exit();
}
