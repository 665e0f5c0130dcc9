/* imap-cmd-auth.c: commands of any state and the login: CAPABILITY, NOOP,
 * LOGOUT, LOGIN, AUTHENTICATE PLAIN (SASL-IR or "+ " continuation; both
 * refused with LOGINDISABLED before TLS when imap { require_tls } is set),
 * STARTTLS, ID, ENABLE, NAMESPACE. The password check and the first-login
 * setup (default folders) run as a job: crypt() and the store may block. */
#include "imapd/imap-private.h"
#include "lib/sasl.h"
#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_FIELD_MAX 1024
#define PRIVACY_REQUIRED "NO [PRIVACYREQUIRED] Use TLS (STARTTLS) before logging in"

static const char *const special_folders[] = { "Drafts", "Sent", "Trash", "Junk", "Archive" };

void imap_cmd_capability(struct imap_session *s, const struct imap_command *cmd)
{
	struct buf caps;

	buf_init(&caps, 0);
	imap_capabilities(s, &caps);
	imap_printf(s, "* CAPABILITY %.*s\r\n", (int)caps.len, caps.data);
	buf_free(&caps);
	imap_tagged(s, cmd->tag, "OK Capability completed");
}

void imap_cmd_logout(struct imap_session *s, const struct imap_command *cmd)
{
	imap_printf(s, "* BYE Logging out\r\n");
	imap_tagged(s, cmd->tag, "OK Logout completed");
	s->state = IMAP_STATE_LOGOUT;
	conn_close(s->conn, "LOGOUT");
}

void imap_cmd_starttls(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->arg_count != 0) {
		imap_bad(s, cmd->tag, "STARTTLS takes no arguments");
		return;
	}
	if (!conn_tls_available(s->conn)) {
		imap_tagged(s, cmd->tag, "NO TLS is not available");
		return;
	}
	imap_tagged(s, cmd->tag, "OK Begin TLS negotiation now");
	s->starttls_pending = true;
}

void imap_cmd_id(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->arg_count != 1 || (cmd->args[0].type != IMAP_ARG_LIST && cmd->args[0].type != IMAP_ARG_NIL)) {
		imap_bad(s, cmd->tag, "ID needs a parameter list or NIL");
		return;
	}
	imap_printf(s, "* ID (\"name\" \"mailfleet\")\r\n");
	imap_tagged(s, cmd->tag, "OK ID completed");
}

/* ENABLE IMAP4rev2 (RFC 9051) and UTF8=ACCEPT (RFC 6855, when imap {
 * utf8_accept } offers it): both make mailbox names UTF-8
 * (imap_append_mailbox_name); IMAP4rev2 also makes SEARCH answer with
 * ESEARCH. True when name is one of them; newly enabled names are added to
 * enabled. */
static bool enable_utf8(struct imap_session *s, const char *name, struct buf *enabled)
{
	bool *flag;

	if (strcasecmp(name, "IMAP4rev2") == 0)
		flag = &s->imap4rev2;
	else if (strcasecmp(name, "UTF8=ACCEPT") == 0 && s->ctx->config->imap_utf8_accept)
		flag = &s->utf8_accept;
	else
		return false;
	if (!*flag)
		buf_printf(enabled, " %s", flag == &s->imap4rev2 ? "IMAP4rev2" : "UTF8=ACCEPT");
	*flag = true;
	return true;
}

void imap_cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
	const char *atom;

	if (cmd->arg_count == 0) {
		imap_bad(s, cmd->tag, "ENABLE needs capability names");
		return;
	}
	for (size_t i = 0; i < cmd->arg_count; i++) {
		if (!imap_arg_get_atom(&cmd->args[i], &atom)) {
			imap_bad(s, cmd->tag, "Invalid capability name");
			return;
		}
	}
	/* the ENABLED response names what this command enabled; unknown
	 * names are ignored (RFC 5161 3.1) */
	struct buf enabled;
	buf_init(&enabled, 0);
	for (size_t i = 0; i < cmd->arg_count; i++) {
		imap_arg_get_atom(&cmd->args[i], &atom);
		bool was_condstore = s->condstore, was_qresync = s->qresync;
		if (enable_utf8(s, atom, &enabled))
			continue;
		if (!imap_enable_modseq(s, atom))
			continue;
		if (strcasecmp(atom, "CONDSTORE") == 0 && !was_condstore)
			buf_printf(&enabled, " CONDSTORE");
		else if (strcasecmp(atom, "QRESYNC") == 0 && !was_qresync)
			buf_printf(&enabled, " QRESYNC");
	}
	imap_printf(s, "* ENABLED%.*s\r\n", (int)enabled.len, enabled.len > 0 ? (const char *)enabled.data : "");
	buf_free(&enabled);
	imap_tagged(s, cmd->tag, "OK Enabled");
}

void imap_cmd_namespace(struct imap_session *s, const struct imap_command *cmd)
{
	if (cmd->arg_count != 0) {
		imap_bad(s, cmd->tag, "NAMESPACE takes no arguments");
		return;
	}
	imap_printf(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_tagged(s, cmd->tag, "OK Namespace completed");
}

/* ---- login ---- */

bool imap_login_disabled(struct imap_session *s)
{
	return s->ctx->config->imap_require_tls && !conn_is_tls(s->conn);
}

enum login_result { LOGIN_OK, LOGIN_BAD, LOGIN_DISABLED, LOGIN_TEMPFAIL };

struct login_data {
	char user[AUTH_FIELD_MAX + 1];
	char password[AUTH_FIELD_MAX + 1];
	struct dir_user_info info;
	enum login_result result;
};

static void login_data_free(void *data)
{
	struct login_data *d = data;

	explicit_bzero(d->password, sizeof(d->password));
	free(d);
}

static void login_work(struct imap_job *job)
{
	struct login_data *d = job->data;
	struct imap_session *s = job->s;
	const char *error;

	/* changes made by mailfleetctl since the last look (one stat) */
	if (directory_refresh(s->ctx->directory, &error) < 0)
		log_warn("imap: directory refresh failed: %s", error);
	if (directory_authenticate(s->ctx->directory, d->user, d->password, &d->info) != 1) {
		d->result = LOGIN_BAD;
		return;
	}
	if (!d->info.imap_enabled) {
		d->result = LOGIN_DISABLED;
		return;
	}
	if (mailbox_user_init(s->ctx->store, d->info.domain, d->info.localpart, special_folders,
			      MF_N_ELEMENTS(special_folders), &error) < 0) {
		log_error("imap: %s: %s", d->info.address, error);
		d->result = LOGIN_TEMPFAIL;
		return;
	}
	d->result = LOGIN_OK;
}

static void login_finish(struct imap_job *job)
{
	struct login_data *d = job->data;
	struct imap_session *s = job->s;
	struct buf caps;

	switch (d->result) {
	case LOGIN_OK:
		s->state = IMAP_STATE_AUTH;
		s->user = d->info;
		conn_set_timeout(s->conn, imap_auth_timeout(s));
		s->bad_commands = 0;
		buf_init(&caps, 0);
		imap_capabilities(s, &caps);
		buf_printf(&job->out, "%s OK [CAPABILITY %.*s] Logged in\r\n", job->tag,
			   (int)caps.len, caps.data);
		buf_free(&caps);
		log_info("imap: login %s from %s", d->info.address, conn_peer_addr(s->conn));
		break;
	case LOGIN_DISABLED:
		buf_printf(&job->out, "%s NO [AUTHORIZATIONFAILED] IMAP access is disabled for this account\r\n",
			   job->tag);
		break;
	case LOGIN_TEMPFAIL:
		buf_printf(&job->out, "%s NO [UNAVAILABLE] Temporary failure, try again later\r\n", job->tag);
		break;
	case LOGIN_BAD:
		buf_printf(&job->out, "%s NO [AUTHENTICATIONFAILED] Authentication failed\r\n", job->tag);
		s->bad_commands++;
		if (s->limits->bad_commands_max != 0 && s->bad_commands >= s->limits->bad_commands_max) {
			buf_printf(&job->out, "* BYE Too many failed logins\r\n");
			conn_close(s->conn, "too many failed logins");
		}
		break;
	}
}

static void login_start(struct imap_session *s, const char *tag, const char *user,
			const char *password)
{
	struct imap_job *job = imap_job_new(s, tag, login_work);
	struct login_data *d = mf_calloc(1, sizeof(*d));

	snprintf(d->user, sizeof(d->user), "%s", user);
	snprintf(d->password, sizeof(d->password), "%s", password);
	job->data = d;
	job->data_free = login_data_free;
	job->finish = login_finish;
	imap_job_start(job);
}

void imap_cmd_login(struct imap_session *s, const struct imap_command *cmd)
{
	const char *user, *password;

	if (cmd->arg_count != 2 || !imap_arg_get_astring(&cmd->args[0], &user) ||
	    !imap_arg_get_astring(&cmd->args[1], &password)) {
		imap_bad(s, cmd->tag, "LOGIN needs a user name and a password");
		return;
	}
	if (imap_login_disabled(s)) {
		imap_tagged(s, cmd->tag, PRIVACY_REQUIRED);
		return;
	}
	if (strlen(user) > AUTH_FIELD_MAX || strlen(password) > AUTH_FIELD_MAX) {
		imap_tagged(s, cmd->tag, "NO [AUTHENTICATIONFAILED] Authentication failed");
		return;
	}
	login_start(s, cmd->tag, user, password);
}

/* ---- AUTHENTICATE PLAIN ---- */

/* "authzid NUL authcid NUL password"; authzid must be empty or the same. */
static void auth_plain(struct imap_session *s, const char *tag, const char *b64, size_t len)
{
	char authzid[SASL_ID_MAX + 1], authcid[SASL_ID_MAX + 1], passwd[SASL_PASS_MAX + 1];
	const char *error;

	if (sasl_plain_decode(b64, len, authzid, authcid, passwd, &error) < 0) {
		imap_bad(s, tag, "%s", error);
		return;
	}
	if (authzid[0] != '\0' && strcasecmp(authzid, authcid) != 0)
		imap_tagged(s, tag, "NO [AUTHORIZATIONFAILED] Proxy authorization not supported");
	else
		login_start(s, tag, authcid, passwd);
	explicit_bzero(passwd, sizeof(passwd));
}

void imap_cmd_authenticate(struct imap_session *s, const struct imap_command *cmd)
{
	const char *mech, *ir = NULL;

	if (cmd->arg_count < 1 || cmd->arg_count > 2 || !imap_arg_get_atom(&cmd->args[0], &mech) ||
	    (cmd->arg_count == 2 && !imap_arg_get_atom(&cmd->args[1], &ir))) {
		imap_bad(s, cmd->tag, "AUTHENTICATE needs a mechanism");
		return;
	}
	if (imap_login_disabled(s)) {
		imap_tagged(s, cmd->tag, PRIVACY_REQUIRED);
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		imap_tagged(s, cmd->tag, "NO [CANNOT] Unsupported authentication mechanism");
		return;
	}
	if (ir != NULL) {
		if (strcmp(ir, "=") == 0)
			ir = "";
		auth_plain(s, cmd->tag, ir, strlen(ir));
		return;
	}
	snprintf(s->line_tag, sizeof(s->line_tag), "%s", cmd->tag);
	s->line_mode = IMAP_LINE_AUTH;
	imap_parser_read_line(s->parser);
	imap_write(s, "+ \r\n", 4);
}

void imap_auth_response(struct imap_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		imap_bad(s, s->line_tag, "Authentication cancelled");
		return;
	}
	auth_plain(s, s->line_tag, line, len);
}
