/* pop3-auth.c: the POP3 AUTHORIZATION state: CAPA (RFC 2449), STLS
 * (RFC 2595), USER/PASS (RFC 1939), AUTH PLAIN (RFC 5034, with an initial
 * response or after "+ ", "*" cancels), and the login job that verifies
 * the password against the directory, checks the user's POP3 switch and
 * opens the maildrop under the POP3 lock ([IN-USE] when another session
 * holds it). Passwords are wiped from memory as soon as they are checked. */
#include "pop3d/pop3-private.h"
#include "lib/sasl.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct login_job {
	struct directory *dir;
	struct store *store;
	struct pop3_mailbox_settings mset;
	char address[POP3_USER_MAX + 1];
	char password[SASL_PASS_MAX + 1];
	/* results */
	int auth;                         /* 1 ok, 0 bad, -1 no directory */
	struct dir_user_info info;
	enum pop3_open_result open;
	struct pop3_mailbox *mbox;
	const char *error;
};

static void write_str(struct pop3_session *s, const char *text)
{
	pop3_write(s, text, strlen(text));
}

static bool plaintext_allowed(const struct pop3_session *s)
{
	return !s->set.require_tls || conn_is_tls(s->conn);
}

void pop3_cmd_capa(struct pop3_session *s, const struct pop3_event *ev)
{
	bool auth = s->state == POP3_STATE_AUTHORIZATION;

	pop3_ok(s, "Capability list follows");
	write_str(s, "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (auth && plaintext_allowed(s))
		write_str(s, "USER\r\nSASL PLAIN\r\n");
	if (auth && conn_tls_available(s->conn) && !conn_is_tls(s->conn))
		write_str(s, "STLS\r\n");
	write_str(s, "IMPLEMENTATION mailfleet\r\n.\r\n");
}

void pop3_cmd_stls(struct pop3_session *s, const struct pop3_event *ev)
{
	if (conn_is_tls(s->conn)) {
		pop3_err(s, "TLS is already active");
		return;
	}
	if (!conn_tls_available(s->conn)) {
		pop3_err(s, "STLS is not available");
		return;
	}
	pop3_ok(s, "Begin TLS negotiation");
	s->starttls_pending = true;
}

void pop3_cmd_apop(struct pop3_session *s, const struct pop3_event *ev)
{
	pop3_err(s, "APOP is not supported; use USER/PASS or AUTH PLAIN");
}

void pop3_cmd_user(struct pop3_session *s, const struct pop3_event *ev)
{
	const struct pop3_arg *a = &ev->args[0];

	if (!plaintext_allowed(s)) {
		pop3_err(s, "[AUTH] Plaintext authentication is disallowed without TLS (use STLS)");
		return;
	}
	if (a->len > POP3_USER_MAX) {
		pop3_err(s, "User name too long");
		return;
	}
	memcpy(s->user, a->s, a->len);
	s->user[a->len] = '\0';
	pop3_ok(s, "Send your password");
}

static void login_work(void *arg)
{
	struct login_job *job = arg;
	const char *error;

	job->auth = -1;
	if (job->dir != NULL) {
		if (directory_refresh(job->dir, &error) < 0)
			log_warn("pop3: directory refresh: %s", error);
		job->auth = directory_authenticate(job->dir, job->address, job->password, &job->info);
	}
	explicit_bzero(job->password, sizeof(job->password));
	if (job->auth != 1 || !job->info.pop3_enabled)
		return;
	job->open = pop3_mailbox_open(job->store, job->info.domain, job->info.localpart,
				      &job->mset, &job->mbox, &job->error);
}

static void login_reply(struct pop3_session *s, struct login_job *job)
{
	const char *peer = conn_peer_addr(s->conn);

	if (job->auth != 1) {
		log_info("pop3(%s): authentication failed for <%s>", peer, job->address);
		pop3_err(s, "[AUTH] Authentication failed");
		return;
	}
	if (!job->info.pop3_enabled) {
		log_info("pop3(%s): <%s>: POP3 access disabled", peer, job->info.address);
		pop3_err(s, "[AUTH] POP3 access is disabled for this account");
		return;
	}
	if (job->open == POP3_OPEN_IN_USE) {
		pop3_err_nocount(s, "[IN-USE] The mailbox is in use by another POP3 session");
		return;
	}
	if (job->open != POP3_OPEN_OK) {
		log_error("pop3(%s): <%s>: cannot open the mailbox: %s", peer, job->info.address, job->error);
		pop3_err_nocount(s, "[SYS/TEMP] Cannot open the mailbox, try again later");
		return;
	}
	s->info = job->info;
	s->mbox = job->mbox;
	job->mbox = NULL;
	s->state = POP3_STATE_TRANSACTION;
	s->lock_refreshed_ms = mf_now_ms();
	uint64_t total = 0;
	for (unsigned i = 0; i < s->mbox->count; i++)
		total += s->mbox->msgs[i].size;
	log_info("pop3(%s): <%s> logged in: %u messages, %llu octets%s", peer, s->info.address,
		 s->mbox->count, (unsigned long long)total, conn_is_tls(s->conn) ? ", TLS" : "");
	pop3_ok(s, "Logged in, %u messages (%llu octets)", s->mbox->count, (unsigned long long)total);
}

static void login_done(struct pop3_session *s, void *arg)
{
	struct login_job *job = arg;

	if (!conn_is_closing(s->conn))
		login_reply(s, job);
	/* a maildrop opened for a client that went away: closing releases it */
	if (job->mbox != NULL && s->mbox == NULL)
		s->mbox = job->mbox;
	else
		pop3_mailbox_close(&job->mbox);
	explicit_bzero(job, sizeof(*job));
	free(job);
}

/* password: not NUL-terminated; wiped by the caller. */
static void login_begin(struct pop3_session *s, const char *address, const char *password,
			size_t password_len)
{
	struct login_job *job = mf_calloc(1, sizeof(*job));
	const struct mf_config *cfg = s->ctx->config;

	job->dir = s->ctx->directory;
	job->store = s->ctx->store;
	job->mset = (struct pop3_mailbox_settings){
		.uidl_format = s->set.uidl_format, .lock_timeout_secs = s->set.lock_timeout_secs,
		.message_size_max = MF_MAX(cfg->limits.message_size_max, (size_t)64 * 1024 * 1024),
	};
	snprintf(job->address, sizeof(job->address), "%s", address);
	memcpy(job->password, password, password_len);
	job->password[password_len] = '\0';
	if (job->store == NULL) {
		pop3_err_nocount(s, "[SYS/PERM] No mail store configured");
		free(job);
		return;
	}
	pop3_run_job(s, login_work, login_done, job);
}

void pop3_cmd_pass(struct pop3_session *s, const struct pop3_event *ev)
{
	if (!plaintext_allowed(s)) {
		pop3_err(s, "[AUTH] Plaintext authentication is disallowed without TLS (use STLS)");
		return;
	}
	if (s->user[0] == '\0') {
		pop3_err(s, "Send USER first");
		return;
	}
	if (ev->rest_len == 0 || ev->rest_len > SASL_PASS_MAX) {
		s->user[0] = '\0';
		pop3_err(s, "[AUTH] Authentication failed");
		return;
	}
	char user[POP3_USER_MAX + 1];
	memcpy(user, s->user, sizeof(user));
	s->user[0] = '\0';
	login_begin(s, user, ev->rest, ev->rest_len);
}

/* Handles a decoded-or-not PLAIN response (initial or continuation). */
static void sasl_plain(struct pop3_session *s, const char *b64, size_t len)
{
	char authzid[SASL_ID_MAX + 1], authcid[SASL_ID_MAX + 1];
	char passwd[SASL_PASS_MAX + 1];
	const char *error;

	if (len == 1 && b64[0] == '*') {
		pop3_err(s, "Authentication cancelled");
		return;
	}
	if (sasl_plain_decode(b64, len, authzid, authcid, passwd, &error) < 0) {
		pop3_err(s, "[AUTH] %s", error);
		return;
	}
	if (authzid[0] != '\0' && strcasecmp(authzid, authcid) != 0) {
		explicit_bzero(passwd, sizeof(passwd));
		pop3_err(s, "[AUTH] Authorization as another user is not permitted");
		return;
	}
	login_begin(s, authcid, passwd, strlen(passwd));
	explicit_bzero(passwd, sizeof(passwd));
}

void pop3_cmd_auth(struct pop3_session *s, const struct pop3_event *ev)
{
	if (ev->argc == 0) {
		/* the mechanism list, as common clients probe it */
		pop3_ok(s, "Supported SASL mechanisms follow");
		write_str(s, "PLAIN\r\n.\r\n");
		return;
	}
	if (!plaintext_allowed(s)) {
		pop3_err(s, "[AUTH] Plaintext authentication is disallowed without TLS (use STLS)");
		return;
	}
	if (ev->args[0].len != 5 || strncasecmp(ev->args[0].s, "PLAIN", 5) != 0) {
		pop3_err(s, "Unsupported authentication mechanism");
		return;
	}
	s->user[0] = '\0';
	if (ev->argc == 2) {
		sasl_plain(s, ev->args[1].s, ev->args[1].len);
		return;
	}
	s->sasl_pending = true;
	write_str(s, "+ \r\n");
	pop3_parser_expect_response(&s->parser);
}

void pop3_sasl_response(struct pop3_session *s, const struct pop3_event *ev)
{
	s->sasl_pending = false;
	if (ev == NULL) {
		pop3_err(s, "[AUTH] Authentication response too long");
		return;
	}
	if (ev->error != NULL) {
		pop3_err(s, "[AUTH] %s", ev->error);
		return;
	}
	sasl_plain(s, ev->line, ev->line_len);
}
