/* dir-password.c: password hashes as Dovecot writes them ("{SCHEME}hash"),
 * made and checked with crypt(3) from libxcrypt. Only strong schemes are
 * accepted: SHA512-CRYPT / SHA256-CRYPT ($6$ / $5$), BLF-CRYPT ($2a$ $2b$ $2y$)
 * and yescrypt ($y$, written as {CRYPT} or {YESCRYPT}). */
#include "cluster/dir-private.h"

#include <crypt.h>
#include <stdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DIR_PASSWORD_MAX 4096
#define DIR_SCHEME_MAX 32

struct scheme {
	const char *name;
	const char *prefixes[4];   /* the crypt(3) prefixes allowed under it */
	const char *gensalt_prefix;
	unsigned long gensalt_count;
};

static const struct scheme schemes[] = {
	{ "SHA512-CRYPT", { "$6$" }, "$6$", 5000 },
	{ "SHA256-CRYPT", { "$5$" }, "$5$", 5000 },
	{ "BLF-CRYPT", { "$2y$", "$2b$", "$2a$" }, "$2y$", 0 },
	{ "YESCRYPT", { "$y$" }, "$y$", 0 },
	{ "CRYPT", { "$6$", "$5$", "$2y$", "$2b$" }, NULL, 0 },
};

static const char *const weak_schemes[] = {
	"PLAIN", "CLEARTEXT", "CLEAR", "PLAIN-TRUNC", "CRAM-MD5", "DIGEST-MD5",
	"MD5", "PLAIN-MD5", "LDAP-MD5", "MD5-CRYPT", "SMD5", "SHA", "SHA1", "SSHA",
	"SHA256", "SSHA256", "SHA512", "SSHA512", "DES-CRYPT", "LANMAN", "NTLM",
	"OTP", "RPA", "PBKDF2",
};

/* Splits "{SCHEME}rest"; a hash without braces is CRYPT (passwd-file default). */
static int split_scheme(const char *hash, char *scheme, const char **rest_r)
{
	const char *end;

	if (hash[0] != '{') {
		strcpy(scheme, "CRYPT");
		*rest_r = hash;
		return 0;
	}
	end = strchr(hash, '}');
	if (end == NULL || end == hash + 1 || (size_t)(end - hash - 1) >= DIR_SCHEME_MAX)
		return -1;
	memcpy(scheme, hash + 1, (size_t)(end - hash - 1));
	scheme[end - hash - 1] = '\0';
	for (char *p = scheme; *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	}
	*rest_r = end + 1;
	return 0;
}

static const struct scheme *scheme_find(const char *name)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(schemes); i++) {
		if (strcmp(schemes[i].name, name) == 0)
			return &schemes[i];
	}
	return NULL;
}

static bool prefix_ok(const struct scheme *s, const char *rest)
{
	/* {CRYPT} also carries yescrypt */
	if (strcmp(s->name, "CRYPT") == 0 && strncmp(rest, "$y$", 3) == 0)
		return true;
	for (size_t i = 0; i < MF_N_ELEMENTS(s->prefixes) && s->prefixes[i] != NULL; i++) {
		if (strncmp(rest, s->prefixes[i], strlen(s->prefixes[i])) == 0)
			return true;
	}
	return false;
}

static bool is_weak(const char *name)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(weak_schemes); i++) {
		if (strcmp(weak_schemes[i], name) == 0)
			return true;
	}
	return false;
}

static const char *crypt_error(const char *scheme, const char *rest, char *buf, size_t size)
{
	if (rest[0] != '$')
		snprintf(buf, size, "weak password scheme {%s} with DES crypt rejected "
			 "(use SHA512-CRYPT, BLF-CRYPT or yescrypt)", scheme);
	else if (strncmp(rest, "$1$", 3) == 0)
		snprintf(buf, size, "weak password scheme {%s} with MD5 crypt ($1$) rejected "
			 "(use SHA512-CRYPT, BLF-CRYPT or yescrypt)", scheme);
	else
		snprintf(buf, size, "password hash does not match scheme {%s}", scheme);
	return buf;
}

const char *dir_password_scheme_error(const char *hash, char *buf, size_t size)
{
	char scheme[DIR_SCHEME_MAX];
	const struct scheme *s;
	const char *rest;

	if (split_scheme(hash, scheme, &rest) < 0) {
		snprintf(buf, size, "malformed password hash (expected {SCHEME}hash)");
		return buf;
	}
	if ((s = scheme_find(scheme)) == NULL) {
		snprintf(buf, size, is_weak(scheme) ?
			 "weak password scheme {%s} rejected (use SHA512-CRYPT, BLF-CRYPT or yescrypt)" :
			 "unknown password scheme {%s}", scheme);
		return buf;
	}
	if (!prefix_ok(s, rest))
		return crypt_error(scheme, rest, buf, size);
	if (strlen(rest) < 8 || strpbrk(rest, " \t\r\n:") != NULL) {
		snprintf(buf, size, "malformed {%s} password hash", scheme);
		return buf;
	}
	return NULL;
}

bool dir_password_scheme_ok(const char *hash)
{
	char buf[128];

	return dir_password_scheme_error(hash, buf, sizeof(buf)) == NULL;
}

char *dir_password_hash(const char *password, const char *scheme_name)
{
	const struct scheme *s = scheme_find(scheme_name == NULL ? "SHA512-CRYPT" : scheme_name);
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], rbytes[16];
	struct crypt_data *data;
	char *out = NULL;

	if (s == NULL || s->gensalt_prefix == NULL || strlen(password) > DIR_PASSWORD_MAX)
		return NULL;
	if (getrandom(rbytes, sizeof(rbytes), 0) != (ssize_t)sizeof(rbytes))
		return NULL;
	if (crypt_gensalt_rn(s->gensalt_prefix, s->gensalt_count, rbytes, sizeof(rbytes),
			     salt, sizeof(salt)) == NULL)
		return NULL;
	data = mf_calloc(1, sizeof(*data));
	if (crypt_rn(password, salt, data, sizeof(*data)) != NULL && data->output[0] != '*')
		out = mf_asprintf("{%s}%s", s->name, data->output);
	explicit_bzero(data, sizeof(*data));
	free(data);
	return out;
}

bool dir_password_verify(const char *password, const char *hash)
{
	char scheme[DIR_SCHEME_MAX];
	const char *rest;
	struct crypt_data *data;
	bool ok = false;

	if (split_scheme(hash, scheme, &rest) < 0 || strlen(password) > DIR_PASSWORD_MAX ||
	    !dir_password_scheme_ok(hash))
		return false;
	data = mf_calloc(1, sizeof(*data));
	if (crypt_rn(password, rest, data, sizeof(*data)) != NULL && data->output[0] != '*') {
		size_t len = strlen(data->output);
		ok = len == strlen(rest) && mf_mem_equal_ct(data->output, rest, len);
	}
	explicit_bzero(data, sizeof(*data));
	free(data);
	return ok;
}

int dir_password_scheme_name(const char *hash, char *buf, size_t size)
{
	char scheme[DIR_SCHEME_MAX];
	const char *rest;

	if (split_scheme(hash, scheme, &rest) < 0)
		return -1;
	snprintf(buf, size, "%s", scheme);
	return 0;
}
