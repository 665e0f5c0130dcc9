/* mailbox-cache.h: the per-mailbox cache on the store ("mailfleet-cache" in
 * the maildir) of what IMAP clients fetch for message lists: ENVELOPE,
 * BODYSTRUCTURE and BODY as rendered, and the header fields mail clients
 * ask for (MAILBOX_CACHE_HEADER_NAMES, as CRLF lines in message order), so
 * a header FETCH of a large mailbox opens no message file.
 *
 * The file is "MFCACHE1" + UIDVALIDITY, then entries appended under the
 * mailbox lock: magic, UID, length, CRC-32, then the fields, each
 * length-prefixed. The mailbox index records each message's entry offset
 * (mailbox_index_rec.cache_off). An entry is used only when its magic, UID
 * and CRC match, so a lost, torn or replaced cache costs a re-read, never a
 * wrong answer; messages never change, so an entry never goes stale.
 *
 * Blocks on the NAS: worker threads only. */
#ifndef MF_STORE_MAILBOX_CACHE_H
#define MF_STORE_MAILBOX_CACHE_H

#include "store/mailbox.h"

#define MAILBOX_CACHE_FILE "mailfleet-cache"
#define MAILBOX_CACHE_ENTRY_MAX (256 * 1024)
#define MAILBOX_CACHE_FILE_MAX (1024u * 1024 * 1024)
#define MAILBOX_CACHE_WINDOW (1024 * 1024)
#define MAILBOX_CACHE_WINDOW_MIN (32 * 1024)
#define MAILBOX_CACHE_QUEUE_MAX (2 * 1024 * 1024)   /* queued: written at once */

/* Header fields kept (case-insensitive): what Thunderbird, K-9/FairEmail,
 * iOS Mail and mbsync fetch for their message lists. */
#define MAILBOX_CACHE_HEADER_NAMES \
	"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "In-Reply-To", \
	"References", "Reply-To", "Sender", "Content-Type", "Content-Transfer-Encoding", \
	"MIME-Version", "Priority", "X-Priority", "Importance", "Newsgroups", "List-Id", \
	"List-Unsubscribe", "List-Post", "Disposition-Notification-To", "Return-Path", \
	"X-Mailer", "Auto-Submitted", "Delivered-To", "X-Spam-Flag", "X-Spam-Status", \
	"Return-Receipt-To", "X-Original-To", "Thread-Topic", "Thread-Index", "Keywords", \
	"Organization", "User-Agent", "Content-Language", "Autocrypt", "X-Mozilla-Draft-Info"

enum mailbox_cache_field {
	MAILBOX_CACHE_ENVELOPE,
	MAILBOX_CACHE_BODYSTRUCTURE,
	MAILBOX_CACHE_BODY,
	MAILBOX_CACHE_HEADERS,
	MAILBOX_CACHE_FIELD_COUNT
};

struct mailbox_cache_entry {
	const char *data[MAILBOX_CACHE_FIELD_COUNT];
	size_t len[MAILBOX_CACHE_FIELD_COUNT];
};

/* True when name (len bytes) is one of MAILBOX_CACHE_HEADER_NAMES. */
bool mailbox_cache_header_cached(const char *name, size_t len);

/* One entry at p (avail bytes there) for uid: 1 with *e pointing into p,
 * 0 when it runs past avail, -1 when it is not a valid entry of uid. */
int mailbox_cache_entry_parse(const unsigned char *p, size_t avail, uint32_t uid,
			      struct mailbox_cache_entry *e);

/* The cached fields of box->msgs[idx]; the pointers stay valid until the
 * next cache call on box. False when it has none (or it is unreadable). */
bool mailbox_cache_lookup(struct mailbox *box, unsigned idx, struct mailbox_cache_entry *e);
/* Queues the fields of box->msgs[idx] for mailbox_cache_flush() (copied;
 * an entry over MAILBOX_CACHE_ENTRY_MAX is not kept); flushes by itself
 * once MAILBOX_CACHE_QUEUE_MAX bytes are queued. */
void mailbox_cache_add(struct mailbox *box, unsigned idx, const struct mailbox_cache_entry *e);
/* Appends the queued entries under the mailbox lock and records their
 * offsets in the index. A failure only costs the cache (logged). */
void mailbox_cache_flush(struct mailbox *box);
/* Frees the read window and anything queued (end of a FETCH). */
void mailbox_cache_release(struct mailbox *box);

#endif
