/* config.h: mailfleetd's configuration, read from a libconfig file or taken
 * from the embedded default (single node, local store under ./var, demo user).
 * Every limit is a setting with a sane default. */
#ifndef MF_CONFIG_H
#define MF_CONFIG_H

#include "lib/lib.h"

#define MF_LISTENERS_MAX 32

enum mf_protocol { MF_PROTO_LMTP, MF_PROTO_IMAP, MF_PROTO_POP3, MF_PROTO_HEALTH };

struct mf_listener_config {
	enum mf_protocol protocol;
	char *address;        /* "127.0.0.1", "::1", "*"; NULL for a unix socket */
	unsigned port;
	char *path;           /* unix socket path, or NULL */
	bool tls;             /* implicit TLS (IMAPS, POP3S) */
};

struct mf_limits {
	size_t line_max;              /* longest command line, bytes (default 8192) */
	size_t message_size_max;      /* largest message accepted, bytes (default 50 MiB) */
	unsigned rcpt_max;            /* recipients per LMTP transaction (default 1000) */
	unsigned connections_max;     /* whole node (default 20000) */
	unsigned connections_per_ip;  /* per client address (default 200; 0 = off) */
	unsigned idle_timeout_secs;   /* command wait (default 300) */
	unsigned data_timeout_secs;   /* between DATA reads (default 300) */
	size_t output_queue_max;      /* per connection, bytes (default 1 MiB) */
	unsigned bad_commands_max;    /* in a row before disconnect (default 10) */
};

struct mf_config {
	char *source;               /* file name, or "(embedded default)" */
	char *hostname;             /* for greetings and file names; NULL = gethostname() */
	char *run_user;             /* drop to this user after binding ("mail"); NULL = stay */
	char *run_group;            /* NULL = the user's primary group */
	char *log_level;            /* debug, info, warn, error */

	char *store_location;       /* directory path, or nfs://server/export?... */
	bool store_compress_lz4;
	bool store_fsync;
	unsigned store_lock_timeout_secs;
	char *store_fault_inject;   /* test-only: io_fault_parse() spec, NULL = none */

	char *directory_path;
	bool create_demo_user;      /* demo@example.test / demo when missing */

	char *tls_cert;             /* PEM paths */
	char *tls_key;
	bool tls_self_signed;       /* generate cert+key into their paths if absent */

	unsigned event_threads;     /* 0 = one per core */
	unsigned worker_threads;    /* blocking store calls (default 16) */
	unsigned watchdog_interval_secs;

	bool lmtp_quota_temporary;  /* over quota: 452 4.2.2 instead of 552 5.2.2 */

	/* Additions for POP3 (group "pop3"). */
	char *pop3_uidl_format;           /* default "%08Xu%08Xv" (UID, UIDVALIDITY in hex) */
	unsigned pop3_lock_timeout_secs;  /* a POP3 session lock older than this is stale (120) */
	bool pop3_require_tls;            /* USER/PASS and AUTH only over TLS (false) */

	/* Additions for IMAP (group "imap"). */
	bool imap_require_tls;            /* LOGINDISABLED, no AUTH= before TLS (false) */
	unsigned imap_idle_keepalive_secs;/* "* OK Still here" interval in IDLE (1740) */
	bool imap_compress;               /* offer COMPRESS=DEFLATE (true) */
	bool imap_utf8_accept;            /* offer UTF8=ACCEPT, RFC 6855 (false) */

	struct mf_limits limits;
	struct mf_listener_config listeners[MF_LISTENERS_MAX];
	unsigned listener_count;

	char *error;                /* owns the text of the last load error */
};

/* Fills cfg with the embedded default. */
void config_defaults(struct mf_config *cfg);
/* Loads a libconfig file on top of the defaults. Errors name file and line. */
int config_load(const char *path, struct mf_config *cfg, const char **error_r);
/* Parses configuration text (for tests and the fuzz target). */
int config_parse_string(const char *text, struct mf_config *cfg, const char **error_r);
/* Writes the effective configuration in libconfig syntax. */
void config_print(const struct mf_config *cfg, int fd);
void config_free(struct mf_config *cfg);
const char *config_protocol_name(enum mf_protocol proto);

/* Additions by the frontend. */
/* "lmtp", "imap", "pop3", "health" -> *proto_r; -1 for anything else. */
int config_protocol_parse(const char *name, enum mf_protocol *proto_r);
/* "lmtp 127.0.0.1:2424", "imaps [::1]:993", "lmtp unix:/run/x.sock" into buf. */
const char *config_listener_describe(const struct mf_listener_config *l,
				     char *buf, size_t size);
/* config_load/config_parse_string: cfg must hold config_defaults() (or an
 * earlier configuration). On success it becomes the embedded default with the
 * file's settings on top; on failure it is unchanged and *error_r ("file:line:
 * text") points into cfg->error, valid until the next load or config_free(). */

#endif
