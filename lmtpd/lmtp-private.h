/* lmtp-private.h: the LMTP session and its transaction, shared by lmtp.c
 * (greeting, command table and dispatch, DATA) and lmtp-delivery.c (RCPT
 * resolution and checks, the delivery job, replies and log lines). */
#ifndef MF_LMTP_PRIVATE_H
#define MF_LMTP_PRIVATE_H

#include "lmtpd/lmtp.h"
#include "lmtpd/lmtp-parser.h"

#define LMTP_QUEUE_ID_LEN 16
/* Mailboxes one transaction may deliver to after alias expansion. */
#define LMTP_TARGETS_MAX 10000
/* Members one RCPT (an alias) may expand to. */
#define LMTP_ALIAS_FANOUT_MAX 1000

enum lmtp_status {
	LMTP_ST_PENDING,
	LMTP_ST_OK,
	LMTP_ST_OVER_QUOTA,   /* 552 5.2.2, or 452 4.2.2 when configured temporary */
	LMTP_ST_NO_SPACE,     /* 452 4.3.1 */
	LMTP_ST_TEMPFAIL,     /* 451 4.3.0 */
	LMTP_ST_PERMFAIL,     /* 550 5.1.3: the store refused the mailbox name */
};

/* One mailbox the message goes into. */
struct lmtp_target {
	char *localpart, *domain;
	char *folder;                  /* NULL = INBOX */
	uint64_t quota_bytes, domain_quota_bytes;
	unsigned rcpt_idx;             /* the first RCPT naming it (Delivered-To) */
	/* outcome, written by the delivery job */
	enum lmtp_status status;
	char *basename;                /* file name in new/ on success */
	char *error;                   /* on failure */
};

/* One accepted RCPT TO, in command order. */
struct lmtp_rcpt {
	char *address;                 /* as given, lower-cased */
	unsigned *targets;             /* indexes into lmtp_txn.targets */
	unsigned target_count;
};

struct lmtp_txn {
	bool active;                   /* MAIL FROM accepted */
	char queue_id[LMTP_QUEUE_ID_LEN + 1];
	char *sender;                  /* "" for the null sender */
	bool size_given;
	uint64_t size;
	struct lmtp_rcpt *rcpts;
	unsigned rcpt_count, rcpt_alloc;
	struct lmtp_target *targets;
	unsigned target_count, target_alloc;
	struct buf message;            /* dot-unstuffed, LF line ends */
	bool too_big;
};

struct lmtp_session {
	struct conn *conn;
	struct mf_context *ctx;
	const struct mf_limits *limits;
	struct lmtp_parser parser;
	bool lhlo_done;
	bool busy;                     /* a blocking job runs; input waits */
	bool dispatching;              /* inside the input loop */
	bool starttls_pending;
	unsigned bad_commands;         /* errors in a row */
	struct lmtp_txn txn;
};

void lmtp_reply(struct lmtp_session *s, const char *fmt, ...) MF_PRINTF(2, 3);
/* A protocol error: counts toward bad_commands_max and closes past it. */
void lmtp_reply_error(struct lmtp_session *s, const char *fmt, ...) MF_PRINTF(2, 3);
/* Parses and handles buffered input until it runs out or a job starts. */
void lmtp_process_input(struct lmtp_session *s);
/* Forgets MAIL, RCPTs and the message. */
void lmtp_txn_reset(struct lmtp_txn *txn);

/* RCPT TO with a parsed path: resolves, checks, replies (maybe after a job). */
void lmtp_rcpt_begin(struct lmtp_session *s, const struct lmtp_path *path);
/* After the final ".": delivers to every target, then one reply per RCPT. */
void lmtp_deliver_begin(struct lmtp_session *s);
/* The message was over message_size_max: 552 per RCPT, logged. */
void lmtp_reject_too_big(struct lmtp_session *s);

#endif
