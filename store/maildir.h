/* maildir.h: maildir++ naming inside store/: unique file names, the sizes
 * carried in them, and the mapping of domain/user/folder to directories.
 * Internal to store/ (callers above use store.h). */
#ifndef MF_STORE_MAILDIR_H
#define MF_STORE_MAILDIR_H

#include "lib/lib.h"

#define MAILDIR_DOMAIN_MAX 253
#define MAILDIR_USER_MAX 128
#define MAILDIR_FOLDER_MAX 255
#define MAILDIR_NAME_MAX 255   /* a file name in new/ or cur/ */

/* The host part of unique names: '/' becomes "\057" and ':' "\072" (as
 * other maildir writers do), other bytes outside printable ASCII are
 * dropped, at most 64 bytes; "localhost" if nothing is left. free() it. */
char *maildir_host_sanitize(const char *host);

/* A new unique base name: <sec>.M<usec>P<pid>Q<counter>R<random>.<host>,S=<size>
 * followed by ,W=<vsize> (the size with CRLF line ends) unless vsize is 0
 * (counter: per-process, so two deliveries in the same microsecond differ;
 * random: 64 bits, so two nodes with the same host name and pid differ). */
char *maildir_unique_name(const char *host, uint64_t counter, uint64_t size, uint64_t vsize);

/* Length of the base name: the part before ":2," (or before any ':'). */
size_t maildir_base_len(const char *name);
/* Reads S=<size> from the base name. False when absent or malformed. */
bool maildir_name_size(const char *name, uint64_t *size_r);

/* "<domain>/<user>/Maildir" for the inbox (folder NULL or any-case "INBOX"),
 * "<domain>/<user>/Maildir/.a.b" for folder "a/b". NULL (errno EINVAL) when
 * a name is invalid. free() it. */
char *maildir_mailbox_path(const char *domain, const char *user, const char *folder);
bool maildir_folder_is_inbox(const char *folder);

#endif
