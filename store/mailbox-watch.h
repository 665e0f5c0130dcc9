/* mailbox-watch.h: the process-wide registry of watched mailboxes, for IMAP
 * IDLE. Sessions that wait for changes register a watcher on a mailbox
 * (by its store path, "dom/user/Maildir[/.a.b]"); the registry keeps one
 * entry per mailbox however many watchers it has, and
 * - polls each watched mailbox once per second from its own threads (the
 *   mtimes of new/ and cur/, two stats), so changes made by another node
 *   (or another process) on the shared store are seen within about a
 *   second, at a cost per mailbox, not per connection;
 * - takes in-process notifications (mailbox_watch_notify*) from the code
 *   that just changed a mailbox on this node (LMTP delivery, IMAP APPEND /
 *   COPY / MOVE / STORE / EXPUNGE, POP3 QUIT), which wake the watchers at
 *   once without waiting for the poll.
 * A wake only says "look again": the woken session syncs its own view.
 * Wakes may be spurious (a poll after a notified change wakes once more).
 *
 * One object per process, made in main and reached through struct
 * mf_context (never a file-scope static). All functions are thread-safe. */
#ifndef MF_STORE_MAILBOX_WATCH_H
#define MF_STORE_MAILBOX_WATCH_H

#include "store/store.h"

#define MAILBOX_WATCH_POLL_MS 1000

struct mailbox_watch;
struct mailbox_watcher;

/* Called with the registry's lock held, from the poll thread or from the
 * thread calling mailbox_watch_notify*(): it must be quick, must not block
 * and must not call into the registry (post to your own thread instead).
 * Once mailbox_watch_remove() returned it is never called again for that
 * watcher. */
typedef void mailbox_watch_fn(void *context);

/* The registry polls through store (not owned; it must outlive the
 * registry). No thread runs before mailbox_watch_start(). */
struct mailbox_watch *mailbox_watch_new(struct store *store);
/* Starts the poll threads (at least one; each polls its share of the
 * mailboxes once a second, so a slow store with many watched mailboxes
 * can be polled in parallel). *error_r is static. */
int mailbox_watch_start(struct mailbox_watch *w, unsigned threads, const char **error_r);
/* Stops and joins the poll threads; every watcher must be removed before. */
void mailbox_watch_free(struct mailbox_watch **w);

/* Registers fn(context) for changes of the mailbox at path. The first
 * watcher of a mailbox creates its entry, whose first poll wakes it once
 * (no earlier state to compare with). */
struct mailbox_watcher *mailbox_watch_add(struct mailbox_watch *w, const char *path,
					  mailbox_watch_fn *fn, void *context);
/* Unregisters and frees; NULL is fine. The mailbox's entry goes with its
 * last watcher. */
void mailbox_watch_remove(struct mailbox_watcher **watcher);

/* The mailbox at path changed on this node: wakes its watchers now. w NULL
 * (no registry in this process) does nothing. */
void mailbox_watch_notify(struct mailbox_watch *w, const char *path);
/* The same for domain/user's mailbox folder (NULL or "INBOX": the inbox);
 * invalid names do nothing. */
void mailbox_watch_notify_mailbox(struct mailbox_watch *w, const char *domain, const char *user,
				  const char *folder);

/* One poll round now: stats every watched mailbox (without the lock held)
 * and wakes the watchers of those that changed. The poll thread calls it
 * once per second; unit tests call it without starting the thread. */
void mailbox_watch_poll(struct mailbox_watch *w);

/* Watched mailboxes and watchers right now (tests, status). */
void mailbox_watch_counts(struct mailbox_watch *w, unsigned *mailboxes_r, unsigned *watchers_r);
/* Polls done since the start (one per mailbox per round). */
uint64_t mailbox_watch_polls(struct mailbox_watch *w);

#endif
