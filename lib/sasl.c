/* sasl.c: the SASL PLAIN response (RFC 4616) in strict base64 (RFC 4648),
 * shared by the IMAP and POP3 AUTHENTICATE/AUTH commands. */
#include "lib/sasl.h"

#include <stdint.h>
#include <string.h>

/* Strict base64 (RFC 4648 4, padding required). -1 on anything else. */
int base64_decode_strict(const char *in, size_t len, unsigned char *out, size_t out_max, size_t *out_len_r)
{
	size_t o = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		unsigned pad = 0;
		for (int k = 0; k < 4; k++) {
			v[k] = mf_base64_value((unsigned char)in[i + k]);
			if (in[i + k] == '=' && i + 4 == len && k >= 2 && (k == 3 || in[i + 3] == '=')) {
				v[k] = 0;
				pad++;
			} else if (v[k] < 0) {
				return -1;
			}
		}
		uint32_t n = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		unsigned char bytes[3] = { (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n };
		if (o + 3 - pad > out_max)
			return -1;
		memcpy(out + o, bytes, 3 - pad);
		o += 3 - pad;
	}
	*out_len_r = o;
	return 0;
}

static int copy_field(const unsigned char *s, size_t len, char *out, size_t max)
{
	if (len > max || memchr(s, '\0', len) != NULL)
		return -1;
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

int sasl_plain_decode(const char *b64, size_t len, char *authzid, char *authcid,
			   char *passwd, const char **error_r)
{
	unsigned char raw[SASL_ID_MAX * 2 + SASL_PASS_MAX + 3];
	size_t raw_len = 0;

	authzid[0] = authcid[0] = passwd[0] = '\0';
	if (!(len == 1 && b64[0] == '=') && base64_decode_strict(b64, len, raw, sizeof(raw), &raw_len) < 0) {
		*error_r = "Invalid base64 data";
		return -1;
	}
	unsigned char *nul1 = memchr(raw, '\0', raw_len);
	unsigned char *nul2 = nul1 != NULL ? memchr(nul1 + 1, '\0', raw_len - (size_t)(nul1 + 1 - raw)) : NULL;
	if (nul2 == NULL) {
		*error_r = "Invalid PLAIN response (authzid NUL authcid NUL password)";
		return -1;
	}
	size_t zlen = (size_t)(nul1 - raw), clen = (size_t)(nul2 - nul1 - 1);
	size_t plen = raw_len - (size_t)(nul2 + 1 - raw);
	if (copy_field(raw, zlen, authzid, SASL_ID_MAX) < 0 ||
	    copy_field(nul1 + 1, clen, authcid, SASL_ID_MAX) < 0 ||
	    copy_field(nul2 + 1, plen, passwd, SASL_PASS_MAX) < 0 || clen == 0 || plen == 0) {
		*error_r = "Invalid PLAIN response (empty or oversized field)";
		explicit_bzero(raw, sizeof(raw));
		passwd[0] = '\0';
		return -1;
	}
	explicit_bzero(raw, sizeof(raw));
	return 0;
}
