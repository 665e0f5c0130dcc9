/* sasl.h: decoding of SASL PLAIN responses, protocol-free. */
#ifndef MF_SASL_H
#define MF_SASL_H

#include "lib/lib.h"

#define SASL_ID_MAX 320      /* authorization and authentication identity */
#define SASL_PASS_MAX 1024

/* Strict base64 (padding required, no white space). -1 on anything else or
 * when the result would pass out_max bytes. */
int base64_decode_strict(const char *in, size_t len, unsigned char *out, size_t out_max,
			 size_t *out_len_r);

/* Decodes the base64 response "authzid NUL authcid NUL passwd" into the
 * NUL-terminated buffers (sizes *_MAX + 1). "=" is the empty response.
 * Returns -1 with a static *error_r for bad base64, missing NULs, empty
 * authcid or passwd, a field over its limit or a NUL inside a field. */
int sasl_plain_decode(const char *b64, size_t len, char *authzid, char *authcid,
		      char *passwd, const char **error_r);

#endif
