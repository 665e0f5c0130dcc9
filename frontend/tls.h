/* tls.h: the node's TLS server context (OpenSSL). One SSL_CTX at a time is
 * current; tls_ctx_load() builds a new one from the certificate and key
 * files and swaps it in, so SIGHUP can reload certificates while existing
 * connections keep the context they started with (SSL_CTX is refcounted).
 * Settings: TLS 1.2 minimum, server cipher preference, no compression, no
 * renegotiation. */
#ifndef MF_TLS_H
#define MF_TLS_H

#include "lib/lib.h"

#include <openssl/ssl.h>

struct tls_ctx;

/* Remembers the paths; nothing is loaded yet. */
struct tls_ctx *tls_ctx_new(const char *cert_path, const char *key_path);
void tls_ctx_free(struct tls_ctx **ctx);

/* Loads certificate chain and key into a new SSL_CTX and makes it current.
 * On failure the previous context (if any) stays current. *error_r is owned
 * by ctx and valid until the next call on it. Thread-safe. */
int tls_ctx_load(struct tls_ctx *ctx, const char **error_r);
/* A new server-side SSL from the current context, or NULL when none loaded. */
SSL *tls_ctx_new_ssl(struct tls_ctx *ctx);

/* When both files are missing, generates an EC P-256 key (file mode 0600)
 * and a self-signed certificate with CN and subjectAltName = hostname, valid
 * for 10 years. 1 = generated, 0 = files present (nothing done), -1 = error
 * (also when only one of the two exists). */
int tls_ctx_ensure_self_signed(struct tls_ctx *ctx, const char *hostname, const char **error_r);

#endif
