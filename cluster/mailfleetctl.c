/* mailfleetctl.c: the admin CLI for the directory (domains, users, aliases,
 * quotas, access switches, archive policies, passwd-file import).
 *
 *   mailfleetctl [--directory DIR | --config FILE] COMMAND ...
 *
 * Every change goes through directory_commit*(), so a running mailfleetd on
 * the same folder picks it up with directory_refresh(). Passwords come from
 * stdin (first line) or as a ready hash with --hash, never as an argument.
 * Exit status: 0 done, 1 refused or failed (nothing changed), 2 usage. */
#include "cluster/dir-import.h"
#include "cluster/directory.h"
#include "frontend/config.h"
#include "lib/log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define CTL_ARGS_MAX 4
#define CTL_PASSWORD_MAX 4096
#define CTL_LINE_MAX 8192

enum ctl_option {
	OPT_QUOTA = 1 << 0,
	OPT_NO_IMAP = 1 << 1,
	OPT_NO_POP3 = 1 << 2,
	OPT_HASH = 1 << 3,
	OPT_SCHEME = 1 << 4,
	OPT_DOMAIN_CREATE = 1 << 5,
	OPT_DOMAIN = 1 << 6,
};

struct ctl {
	struct directory *dir;
	const char *args[CTL_ARGS_MAX];
	unsigned arg_count;
	unsigned options;       /* enum ctl_option seen */
	const char *quota, *hash, *scheme, *domain;
};

struct command {
	const char *group, *verb;
	unsigned min_args, max_args;
	unsigned options;       /* enum ctl_option allowed */
	int (*run)(struct ctl *ctl);
	const char *usage;
};

static int fail(const char *fmt, ...) MF_PRINTF(1, 2);
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("mailfleetctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_REFUSED;
}

/* "1048576", "10K", "5M", "2G", "1T" (binary units); 0 = unlimited */
static int parse_size(const char *s, uint64_t *bytes_r)
{
	uint64_t num = 0, mult = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (num > (UINT64_MAX - 9) / 10)
			return -1;
		num = num * 10 + (uint64_t)(*p - '0');
	}
	switch (toupper((unsigned char)*p)) {
	case 'K': mult = 1ULL << 10; p++; break;
	case 'M': mult = 1ULL << 20; p++; break;
	case 'G': mult = 1ULL << 30; p++; break;
	case 'T': mult = 1ULL << 40; p++; break;
	}
	if (toupper((unsigned char)*p) == 'B')
		p++;
	if (*p != '\0' || (num != 0 && mult > UINT64_MAX / num))
		return -1;
	*bytes_r = num * mult;
	return 0;
}

static const char *size_text(uint64_t bytes, char *buf, size_t size)
{
	if (bytes == 0)
		snprintf(buf, size, "unlimited");
	else
		snprintf(buf, size, "%" PRIu64, bytes);
	return buf;
}

static int commit(struct ctl *ctl, const struct dir_change *ch)
{
	const char *error;

	if (directory_commit(ctl->dir, ch, &error) < 0)
		return fail("%s", error);
	return 0;
}

/* --- passwords --- */

static int read_password(char *buf, size_t size)
{
	bool tty = isatty(STDIN_FILENO) == 1;
	struct termios old, quiet;
	size_t len;

	if (tty) {
		fputs("Password: ", stderr);
		tcgetattr(STDIN_FILENO, &old);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (fgets(buf, (int)size, stdin) == NULL)
		buf[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	len = strlen(buf);
	if (len == size - 1 && buf[len - 1] != '\n')
		return fail("password longer than %d bytes", CTL_PASSWORD_MAX);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len == 0)
		return fail("no password on stdin (give it as the first line, or use --hash)");
	return 0;
}

/* The hash for user add / passwd: --hash as given, else stdin hashed. */
static int password_hash(struct ctl *ctl, char **hash_r)
{
	char password[CTL_PASSWORD_MAX + 2], buf[200];
	const char *error;

	if (ctl->hash != NULL) {
		if ((error = dir_password_scheme_error(ctl->hash, buf, sizeof(buf))) != NULL)
			return fail("%s", error);
		*hash_r = mf_strdup(ctl->hash);
		return 0;
	}
	if (read_password(password, sizeof(password)) != 0)
		return EXIT_REFUSED;
	*hash_r = dir_password_hash(password, ctl->scheme);
	explicit_bzero(password, sizeof(password));
	if (*hash_r == NULL)
		return fail("cannot hash with scheme %s (use SHA512-CRYPT, BLF-CRYPT or YESCRYPT)",
			    ctl->scheme == NULL ? "SHA512-CRYPT" : ctl->scheme);
	return 0;
}

/* --- domain --- */

static int cmd_domain_add(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_DOMAIN_ADD, .name = ctl->args[0] };
	return commit(ctl, &ch);
}

static int cmd_domain_del(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_DOMAIN_DEL, .name = ctl->args[0] };
	return commit(ctl, &ch);
}

static int cmd_domain_quota(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_DOMAIN_QUOTA, .name = ctl->args[0] };

	if (parse_size(ctl->args[1], &ch.number) < 0)
		return fail("invalid size '%s' (bytes, or a number with K, M, G or T)", ctl->args[1]);
	return commit(ctl, &ch);
}

static void print_strv(char **strv)
{
	for (size_t i = 0; strv[i] != NULL; i++)
		printf("%s\n", strv[i]);
	dir_strv_free(&strv);
}

static int cmd_domain_list(struct ctl *ctl)
{
	print_strv(directory_domain_list(ctl->dir));
	return 0;
}

static int cmd_domain_show(struct ctl *ctl)
{
	struct dir_domain_info info;
	char buf[32];

	if (directory_domain_get(ctl->dir, ctl->args[0], &info) != 1)
		return fail("unknown domain '%s'", ctl->args[0]);
	printf("domain: %s\nquota: %s\nusers: %u\naliases: %u\n", info.name,
	       size_text(info.quota_bytes, buf, sizeof(buf)), info.user_count, info.alias_count);
	return 0;
}

/* --- user --- */

static int cmd_user_add(struct ctl *ctl)
{
	struct dir_change ch[2] = {
		{ .type = DIR_CH_USER_ADD, .name = ctl->args[0] },
		{ .type = DIR_CH_USER_ACCESS, .name = ctl->args[0],
		  .imap_enabled = (ctl->options & OPT_NO_IMAP) == 0,
		  .pop3_enabled = (ctl->options & OPT_NO_POP3) == 0 },
	};
	unsigned count = (ctl->options & (OPT_NO_IMAP | OPT_NO_POP3)) != 0 ? 2 : 1, failed;
	const char *error;
	char *hash;
	int ret;

	if (ctl->quota != NULL && parse_size(ctl->quota, &ch[0].number) < 0)
		return fail("invalid --quota '%s' (bytes, or a number with K, M, G or T)", ctl->quota);
	if ((ret = password_hash(ctl, &hash)) != 0)
		return ret;
	ch[0].value = hash;
	ret = directory_commit_batch(ctl->dir, ch, count, &failed, &error) < 0 ?
		fail("%s", error) : 0;
	explicit_bzero(hash, strlen(hash));
	free(hash);
	return ret;
}

static int cmd_user_del(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_USER_DEL, .name = ctl->args[0] };
	return commit(ctl, &ch);
}

static int cmd_user_passwd(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_USER_PASSWD, .name = ctl->args[0] };
	struct dir_user_info info;
	char *hash;
	int ret;

	/* say so before asking for a password */
	if (directory_user_get(ctl->dir, ctl->args[0], &info) != 1)
		return fail("unknown user '%s'", ctl->args[0]);
	if ((ret = password_hash(ctl, &hash)) != 0)
		return ret;
	ch.value = hash;
	ret = commit(ctl, &ch);
	explicit_bzero(hash, strlen(hash));
	free(hash);
	return ret;
}

/* Checks a password (stdin) the way the servers do. */
static int cmd_user_auth(struct ctl *ctl)
{
	char password[CTL_PASSWORD_MAX + 2];
	struct dir_user_info info;
	int ok;

	if (read_password(password, sizeof(password)) != 0)
		return EXIT_REFUSED;
	ok = directory_authenticate(ctl->dir, ctl->args[0], password, &info);
	explicit_bzero(password, sizeof(password));
	if (ok != 1)
		return fail("authentication failed for %s", ctl->args[0]);
	printf("ok %s\n", info.address);
	return 0;
}

static int cmd_user_quota(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_USER_QUOTA, .name = ctl->args[0] };

	if (parse_size(ctl->args[1], &ch.number) < 0)
		return fail("invalid size '%s' (bytes, or a number with K, M, G or T)", ctl->args[1]);
	return commit(ctl, &ch);
}

static int parse_switch(const char *arg, struct dir_change *ch)
{
	const char *eq = strchr(arg, '=');
	bool on;

	if (eq == NULL)
		return -1;
	if (strcmp(eq + 1, "on") == 0)
		on = true;
	else if (strcmp(eq + 1, "off") == 0)
		on = false;
	else
		return -1;
	if (eq - arg == 4 && strncmp(arg, "imap", 4) == 0)
		ch->imap_enabled = on;
	else if (eq - arg == 4 && strncmp(arg, "pop3", 4) == 0)
		ch->pop3_enabled = on;
	else
		return -1;
	return 0;
}

static int cmd_user_access(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_USER_ACCESS, .name = ctl->args[0] };
	struct dir_user_info info;

	if (directory_user_get(ctl->dir, ctl->args[0], &info) != 1)
		return fail("unknown user '%s'", ctl->args[0]);
	ch.imap_enabled = info.imap_enabled;
	ch.pop3_enabled = info.pop3_enabled;
	for (unsigned i = 1; i < ctl->arg_count; i++) {
		if (parse_switch(ctl->args[i], &ch) < 0)
			return fail("invalid switch '%s' (imap=on|off, pop3=on|off)", ctl->args[i]);
	}
	return commit(ctl, &ch);
}

static int cmd_user_archive(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_USER_ARCHIVE, .name = ctl->args[0],
				 .value = ctl->args[1] };
	return commit(ctl, &ch);
}

static int cmd_user_show(struct ctl *ctl)
{
	struct dir_user_info info;
	char scheme[64] = "", buf1[32], buf2[32];

	if (directory_user_get(ctl->dir, ctl->args[0], &info) != 1)
		return fail("unknown user '%s'", ctl->args[0]);
	(void)directory_user_password_scheme(ctl->dir, info.address, scheme, sizeof(scheme));
	printf("address: %s\nquota: %s\ndomain-quota: %s\nimap: %s\npop3: %s\n"
	       "archive: %s\npassword-scheme: %s\n", info.address,
	       size_text(info.quota_bytes, buf1, sizeof(buf1)),
	       size_text(info.domain_quota_bytes, buf2, sizeof(buf2)),
	       info.imap_enabled ? "on" : "off", info.pop3_enabled ? "on" : "off",
	       info.archive_policy[0] == '\0' ? "none" : info.archive_policy, scheme);
	return 0;
}

static int cmd_user_list(struct ctl *ctl)
{
	struct dir_domain_info info;

	if (ctl->arg_count == 1 && directory_domain_get(ctl->dir, ctl->args[0], &info) != 1)
		return fail("unknown domain '%s'", ctl->args[0]);
	print_strv(directory_user_list(ctl->dir, ctl->arg_count == 1 ? ctl->args[0] : NULL));
	return 0;
}

/* --- alias --- */

static int cmd_alias_add(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_ALIAS_ADD, .name = ctl->args[0],
				 .value = ctl->args[1] };
	return commit(ctl, &ch);
}

static int cmd_alias_del(struct ctl *ctl)
{
	struct dir_change ch = { .type = DIR_CH_ALIAS_DEL, .name = ctl->args[0],
				 .value = ctl->args[1] };
	return commit(ctl, &ch);
}

static int cmd_alias_list(struct ctl *ctl)
{
	struct dir_domain_info info;

	if (ctl->arg_count == 1 && directory_domain_get(ctl->dir, ctl->args[0], &info) != 1)
		return fail("unknown domain '%s'", ctl->args[0]);
	print_strv(directory_alias_list(ctl->dir, ctl->arg_count == 1 ? ctl->args[0] : NULL));
	return 0;
}

static int cmd_alias_show(struct ctl *ctl)
{
	char **members;

	if (directory_alias_get(ctl->dir, ctl->args[0], &members) != 1)
		return fail("unknown alias '%s'", ctl->args[0]);
	print_strv(members);
	return 0;
}

static void import_report(void *context, unsigned line, const char *message)
{
	const char *path = context;

	if (line == 0)
		fprintf(stderr, "mailfleetctl: %s: %s\n", path, message);
	else
		fprintf(stderr, "mailfleetctl: %s:%u: %s\n", path, line, message);
}

static int cmd_import(struct ctl *ctl)
{
	struct dir_import_settings set = {
		.domain_create = (ctl->options & OPT_DOMAIN_CREATE) != 0,
		.default_domain = ctl->domain,
	};
	struct dir_import_result result;

	if (dir_import_passwd_file(ctl->dir, ctl->args[0], &set, import_report,
				   (void *)ctl->args[0], &result) < 0)
		return fail("%s: %u problem%s, nothing imported", ctl->args[0], result.errors,
			    result.errors == 1 ? "" : "s");
	printf("imported %u users, created %u domains\n", result.users, result.domains_created);
	return 0;
}

static const struct command commands[] = {
	{ "domain", "add", 1, 1, 0, cmd_domain_add, "domain add NAME" },
	{ "domain", "del", 1, 1, 0, cmd_domain_del, "domain del NAME" },
	{ "domain", "list", 0, 0, 0, cmd_domain_list, "domain list" },
	{ "domain", "show", 1, 1, 0, cmd_domain_show, "domain show NAME" },
	{ "domain", "quota", 2, 2, 0, cmd_domain_quota, "domain quota NAME BYTES" },
	{ "user", "add", 1, 1, OPT_QUOTA | OPT_NO_IMAP | OPT_NO_POP3 | OPT_HASH | OPT_SCHEME,
	  cmd_user_add, "user add ADDRESS [--quota BYTES] [--no-imap] [--no-pop3] "
	  "[--hash '{SCHEME}...' | --scheme SCHEME]  (password: first line of stdin)" },
	{ "user", "del", 1, 1, 0, cmd_user_del, "user del ADDRESS" },
	{ "user", "show", 1, 1, 0, cmd_user_show, "user show ADDRESS" },
	{ "user", "list", 0, 1, 0, cmd_user_list, "user list [DOMAIN]" },
	{ "user", "passwd", 1, 1, OPT_HASH | OPT_SCHEME, cmd_user_passwd,
	  "user passwd ADDRESS [--hash '{SCHEME}...' | --scheme SCHEME]  (password: stdin)" },
	{ "user", "auth", 1, 1, 0, cmd_user_auth, "user auth ADDRESS  (checks the password on stdin)" },
	{ "user", "quota", 2, 2, 0, cmd_user_quota, "user quota ADDRESS BYTES" },
	{ "user", "access", 2, 3, 0, cmd_user_access, "user access ADDRESS imap=on|off [pop3=on|off]" },
	{ "user", "archive", 2, 2, 0, cmd_user_archive, "user archive ADDRESS POLICY  (\"\" clears)" },
	{ "alias", "add", 2, 2, 0, cmd_alias_add, "alias add ADDRESS MEMBER" },
	{ "alias", "del", 2, 2, 0, cmd_alias_del, "alias del ADDRESS MEMBER" },
	{ "alias", "list", 0, 1, 0, cmd_alias_list, "alias list [DOMAIN]" },
	{ "alias", "show", 1, 1, 0, cmd_alias_show, "alias show ADDRESS" },
	{ "import-passwd-file", NULL, 1, 1, OPT_DOMAIN_CREATE | OPT_DOMAIN, cmd_import,
	  "import-passwd-file FILE [--domain-create] [--domain DOMAIN]" },
};

static void usage(FILE *out)
{
	fputs("usage: mailfleetctl [--directory DIR | --config FILE] COMMAND\n"
	      "  (default directory ./var/directory; --config reads directory.path)\n"
	      "commands:\n", out);
	for (size_t i = 0; i < MF_N_ELEMENTS(commands); i++)
		fprintf(out, "  %s\n", commands[i].usage);
	fputs("BYTES: a number, optionally with K, M, G or T (binary); 0 = unlimited.\n"
	      "Exit status: 0 ok, 1 refused or failed (nothing changed), 2 usage error.\n", out);
}

static int usage_error(const char *fmt, const char *arg)
{
	fputs("mailfleetctl: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\n(see mailfleetctl --help)\n", stderr);
	return EXIT_USAGE;
}

struct option_def {
	const char *name;
	enum ctl_option flag;
	bool has_value;
};

static const struct option_def option_defs[] = {
	{ "--quota", OPT_QUOTA, true }, { "--no-imap", OPT_NO_IMAP, false },
	{ "--no-pop3", OPT_NO_POP3, false }, { "--hash", OPT_HASH, true },
	{ "--scheme", OPT_SCHEME, true }, { "--domain-create", OPT_DOMAIN_CREATE, false },
	{ "--domain", OPT_DOMAIN, true },
};

static const char **option_slot(struct ctl *ctl, enum ctl_option flag)
{
	switch (flag) {
	case OPT_QUOTA: return &ctl->quota;
	case OPT_HASH: return &ctl->hash;
	case OPT_SCHEME: return &ctl->scheme;
	case OPT_DOMAIN: return &ctl->domain;
	default: return NULL;
	}
}

/* Takes one "--option [value]" at argv[*i]. */
static int parse_option(struct ctl *ctl, const struct command *cmd, int argc,
			char **argv, int *i)
{
	const char *arg = argv[*i];

	if (strncmp(arg, "--password", 10) == 0 || strcmp(arg, "-p") == 0)
		return usage_error("%s: passwords are never taken from the command line; "
				   "give the password on stdin or a hash with --hash", arg);
	for (size_t k = 0; k < MF_N_ELEMENTS(option_defs); k++) {
		const struct option_def *def = &option_defs[k];
		if (strcmp(arg, def->name) != 0)
			continue;
		if ((cmd->options & def->flag) == 0)
			return usage_error("option %s does not apply to this command", arg);
		if (def->has_value) {
			if (*i + 1 >= argc)
				return usage_error("option %s needs a value", arg);
			*option_slot(ctl, def->flag) = argv[++*i];
		}
		ctl->options |= def->flag;
		return 0;
	}
	return usage_error("unknown option %s", arg);
}

static int parse_command_args(struct ctl *ctl, const struct command *cmd, int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		/* "-5" stays an argument (a bad size), "-p" is refused as an option */
		if ((strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0') ||
		    strcmp(argv[i], "-p") == 0) {
			if (parse_option(ctl, cmd, argc, argv, &i) != 0)
				return EXIT_USAGE;
		} else if (ctl->arg_count == cmd->max_args) {
			return usage_error("too many arguments (usage: mailfleetctl %s)", cmd->usage);
		} else {
			ctl->args[ctl->arg_count++] = argv[i];
		}
	}
	if (ctl->arg_count < cmd->min_args)
		return usage_error("missing arguments (usage: mailfleetctl %s)", cmd->usage);
	if ((ctl->options & OPT_HASH) != 0 && (ctl->options & OPT_SCHEME) != 0)
		return usage_error("%s", "--hash and --scheme exclude each other");
	return 0;
}

static const struct command *find_command(int argc, char **argv, int *used_r)
{
	bool group_known = false;

	for (size_t i = 0; i < MF_N_ELEMENTS(commands); i++) {
		if (strcmp(commands[i].group, argv[0]) != 0)
			continue;
		group_known = true;
		if (commands[i].verb == NULL) {
			*used_r = 1;
			return &commands[i];
		}
		if (argc > 1 && strcmp(commands[i].verb, argv[1]) == 0) {
			*used_r = 2;
			return &commands[i];
		}
	}
	if (group_known)
		usage_error(argc > 1 ? "unknown %s command" : "%s: which command?", argv[0]);
	else
		usage_error("unknown command '%s'", argv[0]);
	return NULL;
}

/* --directory DIR | --config FILE; returns the folder (malloc'd) or NULL. */
static char *directory_path(const char *dir_opt, const char *config_opt, int *exit_r)
{
	struct mf_config cfg;
	const char *error;
	char *path;

	if (dir_opt != NULL)
		return mf_strdup(dir_opt);
	config_defaults(&cfg);
	if (config_opt != NULL && config_load(config_opt, &cfg, &error) < 0) {
		*exit_r = fail("%s", error);
		config_free(&cfg);
		return NULL;
	}
	path = mf_strdup(cfg.directory_path);
	config_free(&cfg);
	return path;
}

static int parse_global(int argc, char **argv, int *i, const char **dir_r, const char **config_r)
{
	for (*i = 1; *i < argc && argv[*i][0] == '-'; (*i)++) {
		const char *arg = argv[*i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if ((strcmp(arg, "--directory") != 0 && strcmp(arg, "--config") != 0))
			return usage_error("unknown option %s", arg);
		if (*i + 1 >= argc)
			return usage_error("option %s needs a value", arg);
		*(arg[2] == 'd' ? dir_r : config_r) = argv[++*i];
	}
	if (*dir_r != NULL && *config_r != NULL)
		return usage_error("%s", "give either --directory or --config, not both");
	if (*i == argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir_opt = NULL, *config_opt = NULL, *error;
	const struct command *cmd;
	struct ctl ctl = { .dir = NULL };
	int i, used, ret = 0;
	char *path;

	if ((ret = parse_global(argc, argv, &i, &dir_opt, &config_opt)) != 0)
		return ret;
	if ((cmd = find_command(argc - i, argv + i, &used)) == NULL)
		return EXIT_USAGE;
	if ((ret = parse_command_args(&ctl, cmd, argc - i - used, argv + i + used)) != 0)
		return ret;
	log_set_level(LOG_LEVEL_WARN);
	if ((path = directory_path(dir_opt, config_opt, &ret)) == NULL)
		return ret;
	if (directory_open(path, &ctl.dir, &error) < 0) {
		free(path);
		return fail("%s", error);
	}
	free(path);
	ret = cmd->run(&ctl);
	directory_close(&ctl.dir);
	return ret;
}
