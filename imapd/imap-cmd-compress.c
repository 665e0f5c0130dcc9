/* imap-cmd-compress.c: COMPRESS (RFC 4978) with the DEFLATE mechanism,
 * offered as COMPRESS=DEFLATE when imap { compress } is on. The tagged OK
 * goes out uncompressed; the frontend (conn_compress) deflates everything
 * after it and inflates the client's side from the next byte after the
 * command line on. */
#include "imapd/imap-private.h"

#include <strings.h>

void imap_cmd_compress(struct imap_session *s, const struct imap_command *cmd)
{
	const char *mechanism;

	if (!s->ctx->config->imap_compress) {
		imap_bad(s, cmd->tag, "Unknown command");
		return;
	}
	if (cmd->arg_count != 1 || !imap_arg_get_atom(&cmd->args[0], &mechanism)) {
		imap_bad(s, cmd->tag, "COMPRESS takes one mechanism name");
		return;
	}
	if (strcasecmp(mechanism, "DEFLATE") != 0) {
		imap_bad(s, cmd->tag, "Unknown compression mechanism");
		return;
	}
	if (conn_is_compressed(s->conn)) {
		imap_tagged(s, cmd->tag, "NO [COMPRESSIONACTIVE] DEFLATE is already active");
		return;
	}
	imap_tagged(s, cmd->tag, "OK DEFLATE active");
	if (conn_compress(s->conn) < 0) {
		conn_close(s->conn, "COMPRESS failed");
		return;
	}
	/* what follows the command line is compressed: stop parsing here */
	s->compress_pending = true;
}
