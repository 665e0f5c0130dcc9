/* mailbox-index.h: the per-mailbox index on the store ("mailfleet-index" in
 * the maildir), so nodes stay stateless and a SELECT of a large mailbox
 * opens no message file. It holds, per UID, flags, keywords, size, CRLF
 * size, internal date and the CONDSTORE mod-sequence of the last change,
 * and the UIDs expunged with their mod-sequences (for QRESYNC's VANISHED).
 *
 * It is a log: a 64-byte header, then fixed 56-byte records, each with a
 * CRC-32, appended under the mailbox lock (mailfleet-uidlist.lock) and only
 * there; "MSG" sets a UID's whole state, "EXPUNGE" removes it. Readers
 * replay it; a reader under the lock continues from where it stopped. When
 * it holds too many superseded records it is rewritten (temp file renamed
 * over it, generation + 1).
 *
 * The maildir stays the truth: mailbox_index_reconcile() compares the index
 * with the uidlist and the flags in the file names and records every
 * difference with a new mod-sequence. A damaged or foreign index is rebuilt
 * from the maildir with mod-sequences above any it could have handed out
 * (the NAS time in microseconds when nothing of it is readable), so a
 * client's remembered HIGHESTMODSEQ never hides a change.
 *
 * Every function blocks on the NAS and expects the mailbox lock held. */
#ifndef MF_STORE_MAILBOX_INDEX_H
#define MF_STORE_MAILBOX_INDEX_H

#include "store/store.h"
#include "store/uidlist.h"

#define MAILBOX_INDEX_FILE "mailfleet-index"
#define MAILBOX_INDEX_HEADER_SIZE 64
#define MAILBOX_INDEX_RECORD_SIZE 56
#define MAILBOX_INDEX_MAX_SIZE (512u * 1024 * 1024)
/* Expunged UIDs kept for VANISHED; older ones raise expunge_floor. */
#define MAILBOX_INDEX_EXPUNGES_KEPT 20000

struct mailbox_index_rec {
	uint32_t uid;
	uint32_t flags;        /* enum mailbox_flag */
	uint32_t keywords;     /* keyword letter bits */
	uint64_t modseq;
	uint64_t size, vsize;
	int64_t date;
	uint32_t cache_off;    /* its entry in mailfleet-cache, 0 = none */
};

struct mailbox_index_expunge {
	uint32_t uid;
	uint64_t modseq;
};

struct mailbox_index {
	struct store *store;
	char *path;                     /* "<mailbox>/mailfleet-index" */
	uint32_t uid_validity;
	uint64_t generation;
	uint64_t offset;                /* bytes replayed so far; 0 = not read */
	uint64_t highest_modseq;
	uint64_t expunge_floor;         /* expunges up to this modseq are forgotten */
	uint64_t superseded;            /* records replaced by later ones */
	struct mailbox_index_rec *recs; /* ascending UID */
	size_t count, cap;
	struct mailbox_index_expunge *expunged;  /* ascending modseq */
	size_t exp_count, exp_cap;
	bool need_rewrite;              /* damaged tail or too much superseded */
};

/* The index of the maildir mailbox at mbox_path (nothing is read yet). */
struct mailbox_index *mailbox_index_new(struct store *store, const char *mbox_path);
void mailbox_index_free(struct mailbox_index **idx);

/* Frees the records (the next refresh reads the whole file again). */
void mailbox_index_forget(struct mailbox_index *idx);

/* Makes dst (an index of the same mailbox) hold what src holds, as if it
 * had replayed the file as far as src did. */
void mailbox_index_copy(struct mailbox_index *dst, const struct mailbox_index *src);

/* Brings idx up to date with the file (incrementally when the generation is
 * unchanged). A missing file gives an empty index; a damaged one is marked
 * need_rewrite with what could be read. -1 only on an I/O error. */
int mailbox_index_refresh(struct mailbox_index *idx);

/* The record of uid, or NULL. */
const struct mailbox_index_rec *mailbox_index_lookup(const struct mailbox_index *idx, uint32_t uid);

/* Learns size, CRLF size and date of a message the index does not know yet
 * (from its file); 0, or -1 with errno (ENOENT: the file is gone). */
typedef int mailbox_index_learn_fn(void *ctx, const struct uidlist_rec *rec,
				   struct mailbox_index_rec *rec_r);

/* Makes the index match the uidlist ul (whose records' file names carry the
 * flags; keyword letters are as in the file names): new UIDs and changed
 * flags get new mod-sequences, UIDs gone get EXPUNGE records. Writes the
 * records (fsync when the store fsyncs), or rewrites the file when due or
 * when the uidlist's UIDVALIDITY differs. learn is called for new UIDs; a
 * message whose file vanished meanwhile is left out until the next sync. */
int mailbox_index_reconcile(struct mailbox_index *idx, const struct uidlist *ul,
			    mailbox_index_learn_fn *learn, void *learn_ctx, const char **error_r);

/* Records new flags of existing UIDs (after renaming their files), each
 * with its own new mod-sequence, stored into changes[i].modseq. */
int mailbox_index_set_flags(struct mailbox_index *idx, struct mailbox_index_rec *changes,
			    size_t count, const char **error_r);

/* Records where the cache entries of uids[i] are (offs[i]); the
 * mod-sequences stay. */
int mailbox_index_set_cache(struct mailbox_index *idx, const uint32_t *uids, const uint32_t *offs,
			    size_t count, const char **error_r);

/* Parses a whole index file into idx (tests and the fuzz target use it);
 * the same rules as mailbox_index_refresh(). */
void mailbox_index_parse(struct mailbox_index *idx, const unsigned char *data, size_t len);
/* Encodes one record / the header (for tests). */
void mailbox_index_encode_rec(unsigned char out[MAILBOX_INDEX_RECORD_SIZE], uint8_t type,
			      const struct mailbox_index_rec *rec);
void mailbox_index_encode_header(unsigned char out[MAILBOX_INDEX_HEADER_SIZE],
				 const struct mailbox_index *idx);

#define MAILBOX_INDEX_REC_MSG 1
#define MAILBOX_INDEX_REC_EXPUNGE 2

#endif
