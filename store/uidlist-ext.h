/* uidlist-ext.h: reading and setting the extension fields of uidlist
 * records (W: size with CRLF line ends, P: a POP3 UIDL kept from another
 * server, ...). Setting takes the same mailbox lock as uidlist_sync()
 * (mailfleet-uidlist.lock), re-reads the uidlist, changes only the named
 * records, writes a temp file and renames it over. */
#ifndef MF_STORE_UIDLIST_EXT_H
#define MF_STORE_UIDLIST_EXT_H

#include "store/uidlist.h"

/* The value of field key ('A'..'Z') in rec->ext; false when absent. */
bool uidlist_ext_get(const struct uidlist_rec *rec, char key, const char **value_r, size_t *len_r);

struct uidlist_ext_update {
	uint32_t uid;
	char key;              /* 'A'..'Z' */
	const char *value;     /* printable, no spaces, non-empty */
};

/* Applies the updates to the uidlist of the mailbox at mbox_path (as for
 * uidlist_sync()). Records no longer present are skipped; a missing
 * uidlist is left alone (0). error_r: static string. */
int uidlist_ext_set(struct store *store, const char *mbox_path,
		    const struct uidlist_ext_update *updates, size_t count, const char **error_r);

#endif
