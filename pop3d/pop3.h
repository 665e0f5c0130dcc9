/* pop3.h: the POP3 protocol module (RFC 1939 with CAPA, RESP-CODES,
 * AUTH-RESP-CODE, PIPELINING (RFC 2449), STLS (RFC 2595) and SASL PLAIN
 * (RFC 5034)). The frontend maps POP3 listeners (plain and implicit TLS)
 * to pop3_handler. */
#ifndef MF_POP3_H
#define MF_POP3_H

#include "frontend/conn.h"

extern const struct proto_handler pop3_handler;

/* The POP3 settings a session uses, taken from the configuration. */
struct pop3_settings {
	const char *uidl_format;       /* default "%08Xu%08Xv" */
	unsigned lock_timeout_secs;    /* a POP3 lock older than this is stale (120) */
	bool require_tls;              /* USER/PASS and AUTH only over TLS (false) */
};

void pop3_settings_from_config(const struct mf_config *cfg, struct pop3_settings *set_r);

#endif
