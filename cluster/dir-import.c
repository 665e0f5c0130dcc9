/* dir-import.c: Dovecot passwd-file import (see dir-import.h). Every line is
 * parsed and checked before anything is committed, so one bad line leaves
 * the directory untouched and the operator sees all the bad lines at once. */
#include "cluster/dir-import.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT_LINE_MAX 8192
#define IMPORT_USERS_MAX 10000000u

struct entry {
	unsigned line;
	char *address;
	char *hash;
	uint64_t quota;
};

struct import {
	struct directory *dir;
	const struct dir_import_settings *set;
	dir_import_report_fn *report;
	void *context;
	struct entry *entries;
	unsigned count, alloc, errors;
	char **domains;          /* to create */
	unsigned domain_count;
};

static void report(struct import *imp, unsigned line, const char *fmt, ...) MF_PRINTF(3, 4);
static void report(struct import *imp, unsigned line, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	imp->report(imp->context, line, msg);
	imp->errors++;
}

/* "N", "N" + b/k/M/G/T; unit_default multiplies a bare number. */
static int parse_quota_value(const char *s, uint64_t unit_default, uint64_t *bytes_r)
{
	uint64_t num = 0, mult = unit_default;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (num > (UINT64_MAX - 9) / 10)
			return -1;
		num = num * 10 + (uint64_t)(*s - '0');
	}
	if (*s != '\0') {
		switch (*s) {
		case 'b': case 'B': mult = 1; break;
		case 'k': case 'K': mult = 1ULL << 10; break;
		case 'm': case 'M': mult = 1ULL << 20; break;
		case 'g': case 'G': mult = 1ULL << 30; break;
		case 't': case 'T': mult = 1ULL << 40; break;
		default: return -1;
		}
		if (s[1] != '\0')
			return -1;
	}
	if (num != 0 && mult > UINT64_MAX / num)
		return -1;
	*bytes_r = num * mult;
	return 0;
}

/* Looks through space-separated extra fields for a quota rule. */
static int parse_extra(struct import *imp, unsigned line, char *extra, uint64_t *quota_r)
{
	for (char *save = NULL, *tok = strtok_r(extra, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		const char *value;
		uint64_t unit;
		if (strncmp(tok, "userdb_quota_rule=*:storage=", 28) == 0) {
			value = tok + 28;
			unit = 1024;
		} else if (strncmp(tok, "userdb_quota_rule=*:bytes=", 26) == 0) {
			value = tok + 26;
			unit = 1;
		} else {
			continue;
		}
		if (parse_quota_value(value, unit, quota_r) < 0) {
			report(imp, line, "invalid quota in '%.100s'", tok);
			return -1;
		}
	}
	return 0;
}

static char *canonical_address(struct import *imp, unsigned line, const char *user)
{
	const char *error;
	char *address;

	if (strchr(user, '@') == NULL) {
		if (imp->set->default_domain == NULL) {
			report(imp, line, "user '%.64s' has no @domain (use --domain DOMAIN)", user);
			return NULL;
		}
		address = mf_asprintf("%s@%s", user, imp->set->default_domain);
	} else {
		address = mf_strdup(user);
	}
	for (char *p = address; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (dir_address_check(address, &error) < 0) {
		report(imp, line, "invalid address '%.100s': %s", address, error);
		free(address);
		return NULL;
	}
	return address;
}

static void add_entry(struct import *imp, unsigned line, char *address, const char *hash,
		      uint64_t quota)
{
	if (imp->count == imp->alloc) {
		imp->alloc = imp->alloc == 0 ? 64 : imp->alloc * 2;
		imp->entries = mf_realloc(imp->entries, sizeof(*imp->entries) * imp->alloc);
	}
	imp->entries[imp->count++] = (struct entry){ .line = line, .address = address,
						     .hash = mf_strdup(hash), .quota = quota };
}

/* user:hash[:uid:gid:gecos:home:shell[:extra]] */
static void parse_line(struct import *imp, unsigned line, char *text)
{
	char *fields[8] = { NULL }, *p = text, *address, buf[200];
	const char *error;
	uint64_t quota = 0;
	unsigned n;

	for (n = 0; n < 7 && p != NULL; n++)
		fields[n] = strsep(&p, ":");
	fields[7] = p;   /* extra fields may contain ':' themselves */
	if (fields[1] == NULL) {
		report(imp, line, "expected user@domain:{SCHEME}hash");
		return;
	}
	if (fields[1][0] == '\0') {
		report(imp, line, "no password hash for '%.100s'", fields[0]);
		return;
	}
	if ((error = dir_password_scheme_error(fields[1], buf, sizeof(buf))) != NULL) {
		report(imp, line, "%s", error);
		return;
	}
	if (fields[7] != NULL && parse_extra(imp, line, fields[7], &quota) < 0)
		return;
	if ((address = canonical_address(imp, line, fields[0])) == NULL)
		return;
	add_entry(imp, line, address, fields[1], quota);
}

static int read_file(struct import *imp, const char *path)
{
	FILE *in = fopen(path, "r");
	char *text = NULL;
	size_t size = 0;
	ssize_t len;
	unsigned line = 0;

	if (in == NULL) {
		report(imp, 0, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&text, &size, in)) >= 0) {
		char *start = text;
		line++;
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			text[--len] = '\0';
		while (*start == ' ' || *start == '\t')
			start++;
		if (*start == '\0' || *start == '#')
			continue;
		if (len > IMPORT_LINE_MAX)
			report(imp, line, "line longer than %d bytes", IMPORT_LINE_MAX);
		else if ((size_t)len != strlen(text))
			report(imp, line, "NUL byte in line");
		else if (imp->count >= IMPORT_USERS_MAX)
			report(imp, line, "more than %u users", IMPORT_USERS_MAX);
		else
			parse_line(imp, line, start);
	}
	if (ferror(in))
		report(imp, 0, "reading %s: %s", path, strerror(errno));
	free(text);
	fclose(in);
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *const *x = a, *const *y = b;
	int ret = strcmp((*x)->address, (*y)->address);

	return ret != 0 ? ret : ((*x)->line < (*y)->line ? -1 : 1);
}

static void check_duplicates(struct import *imp)
{
	struct entry **sorted = mf_malloc(sizeof(*sorted) * (imp->count + 1));

	for (unsigned i = 0; i < imp->count; i++)
		sorted[i] = &imp->entries[i];
	qsort(sorted, imp->count, sizeof(*sorted), entry_cmp);
	for (unsigned i = 1; i < imp->count; i++) {
		if (strcmp(sorted[i]->address, sorted[i - 1]->address) == 0)
			report(imp, sorted[i]->line, "duplicate user %s (first on line %u)",
			       sorted[i]->address, sorted[i - 1]->line);
	}
	free(sorted);
}

static bool domain_listed(const struct import *imp, const char *domain)
{
	for (unsigned i = 0; i < imp->domain_count; i++) {
		if (strcmp(imp->domains[i], domain) == 0)
			return true;
	}
	return false;
}

/* Existing users and missing domains, against the directory as it is now
 * (the batch commit checks again under the lock). */
static void check_directory(struct import *imp)
{
	struct dir_domain_info dinfo;
	struct dir_user_info uinfo;

	for (unsigned i = 0; i < imp->count; i++) {
		const struct entry *e = &imp->entries[i];
		const char *domain = strchr(e->address, '@') + 1;
		if (directory_user_get(imp->dir, e->address, &uinfo) == 1) {
			report(imp, e->line, "user %s already exists", e->address);
		} else if (directory_domain_get(imp->dir, domain, &dinfo) == 1 ||
			   domain_listed(imp, domain)) {
			continue;
		} else if (!imp->set->domain_create) {
			report(imp, e->line, "unknown domain '%s' (use --domain-create)", domain);
		} else {
			imp->domains = mf_realloc(imp->domains,
						  sizeof(char *) * (imp->domain_count + 1));
			imp->domains[imp->domain_count++] = mf_strdup(domain);
		}
	}
}

static int commit(struct import *imp)
{
	unsigned total = imp->domain_count + imp->count, failed;
	struct dir_change *changes = mf_calloc(total + 1, sizeof(*changes));
	const char *error;
	int ret;

	for (unsigned i = 0; i < imp->domain_count; i++)
		changes[i] = (struct dir_change){ .type = DIR_CH_DOMAIN_ADD,
						  .name = imp->domains[i] };
	for (unsigned i = 0; i < imp->count; i++)
		changes[imp->domain_count + i] = (struct dir_change){
			.type = DIR_CH_USER_ADD, .name = imp->entries[i].address,
			.value = imp->entries[i].hash, .number = imp->entries[i].quota };
	ret = directory_commit_batch(imp->dir, changes, total, &failed, &error);
	if (ret < 0) {
		report(imp, failed >= imp->domain_count && failed < total ?
		       imp->entries[failed - imp->domain_count].line : 0, "%s", error);
	}
	free(changes);
	return ret;
}

static void import_free(struct import *imp)
{
	for (unsigned i = 0; i < imp->count; i++) {
		free(imp->entries[i].address);
		explicit_bzero(imp->entries[i].hash, strlen(imp->entries[i].hash));
		free(imp->entries[i].hash);
	}
	free(imp->entries);
	for (unsigned i = 0; i < imp->domain_count; i++)
		free(imp->domains[i]);
	free(imp->domains);
}

int dir_import_passwd_file(struct directory *dir, const char *path,
			   const struct dir_import_settings *set,
			   dir_import_report_fn *report_fn, void *context,
			   struct dir_import_result *result_r)
{
	struct import imp = { .dir = dir, .set = set, .report = report_fn, .context = context };
	int ret = -1;

	memset(result_r, 0, sizeof(*result_r));
	if (read_file(&imp, path) == 0) {
		check_duplicates(&imp);
		check_directory(&imp);
		if (imp.errors == 0 && imp.count == 0)
			report(&imp, 0, "no users in %s", path);
		if (imp.errors == 0)
			ret = commit(&imp);
	}
	if (ret == 0) {
		result_r->users = imp.count;
		result_r->domains_created = imp.domain_count;
	}
	result_r->errors = imp.errors;
	import_free(&imp);
	return ret;
}
