/* tls.c: see tls.h. The current SSL_CTX pointer is guarded by a mutex held
 * only for the pointer swap and for SSL_new() (which takes its own reference
 * on the context), so a reload never disturbs connections in progress. */
#include "frontend/tls.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

struct tls_ctx {
	char *cert_path;
	char *key_path;
	pthread_mutex_t lock;
	SSL_CTX *current;
	char error[512];
};

struct tls_ctx *tls_ctx_new(const char *cert_path, const char *key_path)
{
	struct tls_ctx *ctx = mf_calloc(1, sizeof(*ctx));

	ctx->cert_path = mf_strdup(cert_path);
	ctx->key_path = mf_strdup(key_path);
	pthread_mutex_init(&ctx->lock, NULL);
	return ctx;
}

void tls_ctx_free(struct tls_ctx **ctxp)
{
	struct tls_ctx *ctx = *ctxp;

	if (ctx == NULL)
		return;
	SSL_CTX_free(ctx->current);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx->cert_path);
	free(ctx->key_path);
	free(ctx);
	*ctxp = NULL;
}

/* Formats "what: path: <first OpenSSL error>" into ctx->error. */
static int tls_fail(struct tls_ctx *ctx, const char *what, const char *path, const char **error_r)
{
	unsigned long e = ERR_peek_last_error();
	char ossl[256] = "";

	if (e != 0)
		ERR_error_string_n(e, ossl, sizeof(ossl));
	else if (errno != 0)
		snprintf(ossl, sizeof(ossl), "%s", strerror(errno));
	ERR_clear_error();
	snprintf(ctx->error, sizeof(ctx->error), "%s %s: %s", what, path, ossl);
	*error_r = ctx->error;
	return -1;
}

static SSL_CTX *build_ssl_ctx(struct tls_ctx *ctx, const char **error_r)
{
	SSL_CTX *sc = SSL_CTX_new(TLS_server_method());

	if (sc == NULL) {
		tls_fail(ctx, "SSL_CTX_new", "", error_r);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
	SSL_CTX_set_options(sc, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
			    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
			    SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
	/* the OpenSSL text for a missing file is just "system lib" */
	if (access(ctx->cert_path, R_OK) < 0 || access(ctx->key_path, R_OK) < 0) {
		const char *path = access(ctx->cert_path, R_OK) < 0 ? ctx->cert_path : ctx->key_path;
		ERR_clear_error();
		tls_fail(ctx, "cannot read", path, error_r);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(sc, ctx->cert_path) != 1) {
		tls_fail(ctx, "cannot load certificate", ctx->cert_path, error_r);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(sc, ctx->key_path, SSL_FILETYPE_PEM) != 1) {
		tls_fail(ctx, "cannot load key", ctx->key_path, error_r);
		goto fail;
	}
	if (SSL_CTX_check_private_key(sc) != 1) {
		tls_fail(ctx, "key does not match certificate", ctx->cert_path, error_r);
		goto fail;
	}
	return sc;
fail:
	SSL_CTX_free(sc);
	return NULL;
}

int tls_ctx_load(struct tls_ctx *ctx, const char **error_r)
{
	SSL_CTX *sc = build_ssl_ctx(ctx, error_r);
	SSL_CTX *old;

	if (sc == NULL)
		return -1;
	pthread_mutex_lock(&ctx->lock);
	old = ctx->current;
	ctx->current = sc;
	pthread_mutex_unlock(&ctx->lock);
	SSL_CTX_free(old);
	return 0;
}

SSL *tls_ctx_new_ssl(struct tls_ctx *ctx)
{
	SSL *ssl = NULL;

	pthread_mutex_lock(&ctx->lock);
	if (ctx->current != NULL)
		ssl = SSL_new(ctx->current);
	pthread_mutex_unlock(&ctx->lock);
	return ssl;
}

/* ---- self-signed certificate ---- */

static X509 *make_cert(EVP_PKEY *key, const char *hostname)
{
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	unsigned char serial[16];
	BIGNUM *bn;
	char san[300];

	if (x == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
		BN_free(bn);
		goto fail;
	}
	BN_free(bn);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_time_adj_ex(X509_getm_notAfter(x), 3653, 0, NULL);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"mailfleet", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	snprintf(san, sizeof(san), "DNS:%s", hostname);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
		X509_EXTENSION_free(ext);
		goto fail;
	}
	X509_EXTENSION_free(ext);
	if (X509_sign(x, key, EVP_sha256()) <= 0)
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

/* Creates path exclusively with mode, then writes through write_pem(). */
static int write_pem_file(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	FILE *f;
	int ok;

	if (fd < 0)
		return -1;
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) :
		PEM_write_X509(f, cert);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	if (fclose(f) != 0)
		ok = 0;
	if (ok != 1) {
		unlink(path);
		return -1;
	}
	return 0;
}

static int make_parent_dirs(const char *path)
{
	char *dir = mf_strdup(path);
	int ret = 0;

	for (char *p = dir + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			ret = -1;
		*p = '/';
	}
	free(dir);
	return ret;
}

int tls_ctx_ensure_self_signed(struct tls_ctx *ctx, const char *hostname, const char **error_r)
{
	bool have_cert = access(ctx->cert_path, F_OK) == 0;
	bool have_key = access(ctx->key_path, F_OK) == 0;
	EVP_PKEY *key;
	X509 *cert = NULL;

	if (have_cert && have_key)
		return 0;
	if (have_cert || have_key) {
		errno = 0;
		return tls_fail(ctx, "only one of certificate and key exists:",
				have_cert ? ctx->key_path : ctx->cert_path, error_r);
	}
	errno = 0;
	if (make_parent_dirs(ctx->cert_path) < 0 || make_parent_dirs(ctx->key_path) < 0)
		return tls_fail(ctx, "cannot create the directory of", ctx->cert_path, error_r);
	key = EVP_EC_gen("P-256");
	if (key == NULL)
		return tls_fail(ctx, "cannot generate a key for", ctx->key_path, error_r);
	cert = make_cert(key, hostname);
	if (cert == NULL) {
		EVP_PKEY_free(key);
		return tls_fail(ctx, "cannot make a certificate for", hostname, error_r);
	}
	errno = 0;
	if (write_pem_file(ctx->key_path, 0600, key, NULL) < 0) {
		tls_fail(ctx, "cannot write", ctx->key_path, error_r);
	} else if (write_pem_file(ctx->cert_path, 0644, NULL, cert) < 0) {
		tls_fail(ctx, "cannot write", ctx->cert_path, error_r);
		unlink(ctx->key_path);
	} else {
		log_info("generated a self-signed certificate for %s: %s", hostname, ctx->cert_path);
		EVP_PKEY_free(key);
		X509_free(cert);
		return 1;
	}
	EVP_PKEY_free(key);
	X509_free(cert);
	return -1;
}
