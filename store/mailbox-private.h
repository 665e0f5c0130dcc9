/* mailbox-private.h: helpers shared by mailbox.c, mailbox-save.c and
 * mailbox-list.c. Internal to store/. */
#ifndef MF_STORE_MAILBOX_PRIVATE_H
#define MF_STORE_MAILBOX_PRIVATE_H

#include "store/mailbox.h"

struct store_lock;

/* The uidlist's lock: expunges, keyword changes and UID assignment exclude
 * each other. */
#define MAILBOX_LOCK_NAME "mailfleet-uidlist.lock"
#define MAILBOX_LOCK_TIMEOUT_SECS 120
#define MAILBOX_LOCK_WAIT_MS 30000

int mailbox_lock(struct store *store, const char *path, struct store_lock **lock_r);
/* Flags and keyword bits from a file name's ":2," info. */
void mailbox_name_flags(const char *filename, uint32_t *flags_r, uint32_t *keywords_r);
/* The base of filename with ":2,<letters>" for flags and keywords. free(). */
char *mailbox_name_with_flags(const char *filename, uint32_t flags, uint32_t keywords);
/* "<path>/{new,cur}/<filename>". free(). */
char *mailbox_msg_path(const struct mailbox *box, const struct mailbox_msg *m);
/* Finds m's file again by base name after someone renamed it; ENOENT. */
int mailbox_msg_relocate(struct mailbox *box, struct mailbox_msg *m);
int mailbox_keywords_load(struct mailbox *box);
void mailbox_keywords_clear(struct mailbox *box);
/* Size with every bare LF counted as CRLF. */
uint64_t mailbox_crlf_size(const unsigned char *data, size_t len);

#endif
