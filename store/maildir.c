/* maildir.c: maildir++ names: validation of domain, user and folder names
 * (nothing may escape the store root), unique message file names that stay
 * unique across nodes, and the sizes recorded in those names. */
#include "store/maildir.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

/* Common rules for one path component: not empty, not "." or "..", no
 * leading '.', no '/', no control characters (NUL ends the string). */
static bool component_valid(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '/')
			return false;
	}
	return true;
}

bool store_domain_name_valid(const char *domain)
{
	size_t len = domain == NULL ? 0 : strlen(domain);

	return len <= MAILDIR_DOMAIN_MAX && component_valid(domain, len);
}

bool store_user_name_valid(const char *user)
{
	size_t len = user == NULL ? 0 : strlen(user);

	return len <= MAILDIR_USER_MAX && component_valid(user, len);
}

/* '/' separates levels; '.' is maildir++'s own separator on disk, so it is
 * refused inside a level rather than silently merging two hierarchies. */
bool store_folder_name_valid(const char *folder)
{
	size_t len = folder == NULL ? 0 : strlen(folder);

	if (len == 0 || len > MAILDIR_FOLDER_MAX)
		return false;
	for (const char *p = folder;;) {
		const char *slash = strchr(p, '/');
		size_t clen = slash == NULL ? strlen(p) : (size_t)(slash - p);
		if (!component_valid(p, clen) || memchr(p, '.', clen) != NULL)
			return false;
		if (slash == NULL)
			return true;
		p = slash + 1;
	}
}

bool maildir_folder_is_inbox(const char *folder)
{
	return folder == NULL || strcasecmp(folder, "INBOX") == 0;
}

char *maildir_mailbox_path(const char *domain, const char *user, const char *folder)
{
	if (!store_domain_name_valid(domain) || !store_user_name_valid(user) ||
	    (!maildir_folder_is_inbox(folder) && !store_folder_name_valid(folder))) {
		errno = EINVAL;
		return NULL;
	}
	if (maildir_folder_is_inbox(folder))
		return mf_asprintf("%s/%s/Maildir", domain, user);
	char *path = mf_asprintf("%s/%s/Maildir/.%s", domain, user, folder);
	for (char *p = strstr(path, "/Maildir/.") + 10; *p != '\0'; p++) {
		if (*p == '/')
			*p = '.';
	}
	return path;
}

char *maildir_host_sanitize(const char *host)
{
	char out[64 * 4 + 1];
	size_t len = 0;

	for (const char *p = host == NULL ? "" : host; *p != '\0' && len < 64; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '/' || c == ':') {
			len += (size_t)snprintf(out + len, sizeof(out) - len, "\\%03o", c);
		} else if (c > 0x20 && c < 0x7f) {
			out[len++] = (char)c;
		}
	}
	out[len] = '\0';
	return mf_strdup(len == 0 ? "localhost" : out);
}

char *maildir_unique_name(const char *host, uint64_t counter, uint64_t size, uint64_t vsize)
{
	struct timeval tv;
	uint64_t rnd = 0;

	gettimeofday(&tv, NULL);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = mf_now_us() ^ ((uint64_t)getpid() << 32) ^ counter;
	if (vsize == 0)
		return mf_asprintf("%lld.M%06ldP%dQ%" PRIu64 "R%016" PRIx64 ".%s,S=%" PRIu64,
				   (long long)tv.tv_sec, (long)tv.tv_usec, (int)getpid(),
				   counter, rnd, host, size);
	return mf_asprintf("%lld.M%06ldP%dQ%" PRIu64 "R%016" PRIx64 ".%s,S=%" PRIu64 ",W=%" PRIu64,
			   (long long)tv.tv_sec, (long)tv.tv_usec, (int)getpid(), counter,
			   rnd, host, size, vsize);
}

size_t maildir_base_len(const char *name)
{
	const char *colon = strchr(name, ':');

	return colon == NULL ? strlen(name) : (size_t)(colon - name);
}

bool maildir_name_size(const char *name, uint64_t *size_r)
{
	size_t base = maildir_base_len(name);

	for (const char *p = name; (p = strstr(p, ",S=")) != NULL && (size_t)(p - name) < base; p++) {
		const char *d = p + 3;
		uint64_t size = 0;
		size_t digits = 0;
		while (d[digits] >= '0' && d[digits] <= '9' && digits < 20) {
			size = size * 10 + (uint64_t)(d[digits] - '0');
			digits++;
		}
		char end = d[digits];
		if (digits > 0 && digits < 20 && (end == '\0' || end == ',' || end == ':')) {
			*size_r = size;
			return true;
		}
	}
	return false;
}
