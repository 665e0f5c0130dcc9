/* pop3-private.h: the POP3 session shared by pop3.c (session life cycle,
 * dispatcher, replies, message output, lock refresh), pop3-auth.c
 * (AUTHORIZATION state: CAPA, STLS, USER/PASS, AUTH PLAIN, the login job)
 * and pop3-commands.c (TRANSACTION state and QUIT/UPDATE). */
#ifndef MF_POP3_PRIVATE_H
#define MF_POP3_PRIVATE_H

#include "pop3d/pop3.h"
#include "pop3d/pop3-parser.h"
#include "pop3d/pop3-mailbox.h"
#include "cluster/directory.h"

#define POP3_USER_MAX DIR_ADDRESS_MAX
#define POP3_CHUNK (64 * 1024)          /* one piece of RETR output, at most */
#define POP3_PIECE_MIN 1024             /* smaller room: wait for the queue to drain */
/* A client that RETRs messages in order gets the following ones read ahead
 * in the same store job, up to these bounds. */
#define POP3_PREFETCH_BYTES (256 * 1024)
#define POP3_PREFETCH_MAX 64

struct pop3_prefetched {
	unsigned idx;
	unsigned char *data;
	size_t len;
};

enum pop3_state {
	POP3_STATE_AUTHORIZATION,
	POP3_STATE_TRANSACTION,
	POP3_STATE_UPDATE,                  /* QUIT in TRANSACTION: deleting, then closing */
	POP3_STATE_LOGOUT,                  /* QUIT seen; the connection closes */
};

/* Multi-line output produced in bounded pieces. */
enum pop3_output {
	POP3_OUT_NONE,
	POP3_OUT_MESSAGE,                   /* RETR / TOP */
	POP3_OUT_LIST,                      /* LIST without argument */
	POP3_OUT_UIDL,                      /* UIDL without argument */
};

struct pop3_session {
	struct conn *conn;
	struct mf_context *ctx;
	const struct mf_limits *limits;
	struct pop3_settings set;
	struct pop3_parser parser;
	enum pop3_state state;
	char user[POP3_USER_MAX + 1];       /* from USER; "" when none */
	bool busy;                          /* a blocking job runs; input waits */
	bool dispatching;                   /* inside the input loop */
	bool starttls_pending;
	bool sasl_pending;                  /* "+ " sent, waiting for the response */
	unsigned bad_commands;              /* errors in a row */
	struct dir_user_info info;          /* the logged-in user */
	struct pop3_mailbox *mbox;          /* TRANSACTION state */
	uint64_t lock_refreshed_ms;
	bool lock_lost;

	/* messages read ahead (ascending idx) for a sequential reader */
	struct pop3_prefetched prefetch[POP3_PREFETCH_MAX];
	unsigned prefetch_count;
	unsigned next_sequential;           /* idx a sequential reader asks for next */

	/* multi-line output in progress */
	enum pop3_output output;
	unsigned list_next;                 /* LIST/UIDL: next message index */
	unsigned char *msg_data;
	struct pop3_msg_stream stream;
	unsigned char *scratch;             /* POP3_CHUNK bytes */
};

/* "+OK ..." / "-ERR ..." with CRLF; error replies count toward
 * bad_commands_max and close the connection past it. */
void pop3_ok(struct pop3_session *s, const char *fmt, ...) MF_PRINTF(2, 3);
void pop3_err(struct pop3_session *s, const char *fmt, ...) MF_PRINTF(2, 3);
/* An -ERR that is not the client's fault ([SYS/TEMP], [IN-USE]): not counted. */
void pop3_err_nocount(struct pop3_session *s, const char *fmt, ...) MF_PRINTF(2, 3);
/* Queues raw bytes (multi-line bodies). */
void pop3_write(struct pop3_session *s, const void *data, size_t len);
/* Runs work on the worker pool with input paused; done runs on the loop. */
void pop3_run_job(struct pop3_session *s, void (*work)(void *arg),
		  void (*done)(struct pop3_session *s, void *arg), void *arg);
/* Parses and handles buffered input until it runs out, a job starts or
 * message output waits for the client. */
void pop3_process_input(struct pop3_session *s);
/* Sends the message (LF stored, len bytes of data) as RETR/TOP output,
 * ending with "."; takes data (free() it). */
void pop3_send_message(struct pop3_session *s, unsigned char *data, size_t len);
/* Sends the LIST or UIDL listing (after the +OK line), ending with ".". */
void pop3_send_listing(struct pop3_session *s, enum pop3_output kind);

/* pop3-auth.c */
void pop3_cmd_capa(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_stls(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_user(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_pass(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_auth(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_apop(struct pop3_session *s, const struct pop3_event *ev);
/* The line after "+ " (ev.line), or a too-long line (ev NULL). */
void pop3_sasl_response(struct pop3_session *s, const struct pop3_event *ev);

/* pop3-commands.c */
void pop3_cmd_stat(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_list(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_uidl(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_retr(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_top(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_dele(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_rset(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_noop(struct pop3_session *s, const struct pop3_event *ev);
void pop3_cmd_quit(struct pop3_session *s, const struct pop3_event *ev);
/* Frees the messages read ahead. */
void pop3_prefetch_clear(struct pop3_session *s);
/* Writes listing lines from s->list_next on into out[0..max); true when the
 * final ".\r\n" was written too. */
bool pop3_listing_fill(struct pop3_session *s, unsigned char *out, size_t max, size_t *written_r);

#endif
