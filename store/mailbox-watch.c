/* mailbox-watch.c: see mailbox-watch.h. A chained hash table of entries,
 * one per watched mailbox path, each with its list of watchers, under one
 * mutex. The poll thread copies the paths under the lock, stats without it
 * (a stalled NAS must not block sessions that register or leave), then
 * takes the lock again to compare and wake. */
#include "store/mailbox-watch.h"
#include "store/io.h"
#include "store/maildir.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_BUCKETS 4096
#define NSEC_PER_SEC 1000000000LL

struct watch_entry {
	struct watch_entry *hnext;
	char *path;
	unsigned hash;
	struct mailbox_watcher *watchers;
	unsigned watcher_count;
	int64_t stamps[2];          /* mtimes (ns) of new/ and cur/ at the last poll */
	bool stamps_valid;          /* false: the next good poll wakes (no baseline) */
	bool settle;                /* wake once more at the next poll */
};

struct mailbox_watcher {
	struct mailbox_watch *watch;
	struct watch_entry *entry;
	struct mailbox_watcher *prev, *next;
	mailbox_watch_fn *fn;
	void *context;
};

struct poll_thread {
	struct mailbox_watch *w;
	pthread_t thread;
	unsigned part;              /* polls the buckets b with b % parts == part */
};

struct mailbox_watch {
	struct store *store;
	pthread_mutex_t lock;
	pthread_cond_t cond;        /* signals stopping */
	struct poll_thread *threads;
	unsigned parts;             /* poll threads asked for; set before the first starts */
	unsigned thread_count;      /* started */
	bool stopping;
	struct watch_entry **buckets;
	unsigned entry_count, watcher_count;
	uint64_t polls;
};

struct mailbox_watch *mailbox_watch_new(struct store *store)
{
	struct mailbox_watch *w = mf_calloc(1, sizeof(*w));
	pthread_condattr_t attr;

	w->store = store;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	w->buckets = mf_calloc(WATCH_BUCKETS, sizeof(*w->buckets));
	return w;
}

static unsigned path_hash(const char *path)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static struct watch_entry **entry_find(struct mailbox_watch *w, const char *path, unsigned hash)
{
	struct watch_entry **p = &w->buckets[hash % WATCH_BUCKETS];

	while (*p != NULL && ((*p)->hash != hash || strcmp((*p)->path, path) != 0))
		p = &(*p)->hnext;
	return p;
}

static void entry_wake(struct watch_entry *e)
{
	for (struct mailbox_watcher *wr = e->watchers; wr != NULL; wr = wr->next)
		wr->fn(wr->context);
}

/* ---- watchers ---- */

struct mailbox_watcher *mailbox_watch_add(struct mailbox_watch *w, const char *path,
					  mailbox_watch_fn *fn, void *context)
{
	struct mailbox_watcher *wr = mf_calloc(1, sizeof(*wr));
	unsigned hash = path_hash(path);

	wr->watch = w;
	wr->fn = fn;
	wr->context = context;
	pthread_mutex_lock(&w->lock);
	struct watch_entry **p = entry_find(w, path, hash);
	if (*p == NULL) {
		*p = mf_calloc(1, sizeof(**p));
		(*p)->path = mf_strdup(path);
		(*p)->hash = hash;
		w->entry_count++;
	}
	wr->entry = *p;
	wr->next = wr->entry->watchers;
	if (wr->next != NULL)
		wr->next->prev = wr;
	wr->entry->watchers = wr;
	wr->entry->watcher_count++;
	w->watcher_count++;
	pthread_mutex_unlock(&w->lock);
	return wr;
}

void mailbox_watch_remove(struct mailbox_watcher **watcherp)
{
	struct mailbox_watcher *wr = *watcherp;

	if (wr == NULL)
		return;
	struct mailbox_watch *w = wr->watch;
	struct watch_entry *e = wr->entry;

	pthread_mutex_lock(&w->lock);
	if (wr->prev != NULL)
		wr->prev->next = wr->next;
	else
		e->watchers = wr->next;
	if (wr->next != NULL)
		wr->next->prev = wr->prev;
	w->watcher_count--;
	if (--e->watcher_count == 0) {
		struct watch_entry **p = entry_find(w, e->path, e->hash);
		*p = e->hnext;
		w->entry_count--;
		free(e->path);
		free(e);
	}
	pthread_mutex_unlock(&w->lock);
	mf_free(watcherp);
}

/* ---- notification ---- */

void mailbox_watch_notify(struct mailbox_watch *w, const char *path)
{
	unsigned hash;

	if (w == NULL || path == NULL)
		return;
	hash = path_hash(path);
	pthread_mutex_lock(&w->lock);
	struct watch_entry *e = *entry_find(w, path, hash);
	if (e != NULL)
		entry_wake(e);
	pthread_mutex_unlock(&w->lock);
}

void mailbox_watch_notify_mailbox(struct mailbox_watch *w, const char *domain, const char *user,
				  const char *folder)
{
	char *path;

	if (w == NULL || domain == NULL || user == NULL)
		return;
	path = maildir_mailbox_path(domain, user, folder);
	mailbox_watch_notify(w, path);
	free(path);
}

/* ---- polling ---- */

static int dir_stamps(struct store *store, const char *path, int64_t stamps[2])
{
	static const char *const dirs[] = { "new", "cur" };

	for (int i = 0; i < 2; i++) {
		char *dir = mf_asprintf("%s/%s", path, dirs[i]);
		struct io_stat st;
		int ret = io_stat(store_io(store), dir, &st);
		free(dir);
		if (ret < 0)
			return -1;
		stamps[i] = st.mtime_sec * NSEC_PER_SEC + st.mtime_nsec;
	}
	return 0;
}

/* Compares with the last poll and wakes when something moved. A store
 * with whole-second mtimes cannot show a second change within the same
 * second: after a change seen there, the next poll wakes once more. */
static void entry_polled(struct watch_entry *e, int ret, const int64_t stamps[2])
{
	bool changed;

	if (ret < 0) {
		/* gone or unreadable: wake once, then quiet until it is back */
		if (e->stamps_valid)
			entry_wake(e);
		e->stamps_valid = e->settle = false;
		return;
	}
	changed = !e->stamps_valid || stamps[0] != e->stamps[0] || stamps[1] != e->stamps[1];
	if (changed || e->settle)
		entry_wake(e);
	e->settle = changed && e->stamps_valid &&
		stamps[0] % NSEC_PER_SEC == 0 && stamps[1] % NSEC_PER_SEC == 0;
	e->stamps[0] = stamps[0];
	e->stamps[1] = stamps[1];
	e->stamps_valid = true;
}

/* One round over the buckets b with b % parts == part. */
static void poll_part(struct mailbox_watch *w, unsigned part, unsigned parts)
{
	char **paths;
	unsigned count = 0;

	pthread_mutex_lock(&w->lock);
	paths = mf_calloc(w->entry_count + 1, sizeof(*paths));
	for (unsigned b = part; b < WATCH_BUCKETS; b += parts) {
		for (struct watch_entry *e = w->buckets[b]; e != NULL; e = e->hnext)
			paths[count++] = mf_strdup(e->path);
	}
	pthread_mutex_unlock(&w->lock);

	for (unsigned i = 0; i < count; i++) {
		int64_t stamps[2] = { 0, 0 };
		int ret = dir_stamps(w->store, paths[i], stamps);
		unsigned hash = path_hash(paths[i]);

		pthread_mutex_lock(&w->lock);
		struct watch_entry *e = *entry_find(w, paths[i], hash);
		if (e != NULL)
			entry_polled(e, ret, stamps);
		w->polls++;
		pthread_mutex_unlock(&w->lock);
		free(paths[i]);
	}
	free(paths);
}

void mailbox_watch_poll(struct mailbox_watch *w)
{
	poll_part(w, 0, 1);
}

static void deadline_after(struct timespec *ts, uint64_t start_ms, unsigned ms)
{
	uint64_t at = start_ms + ms;
	struct timespec now;

	/* start_ms is mf_now_ms() (monotonic); the condition uses the same clock */
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
	uint64_t wait_ms = at > now_ms ? at - now_ms : 0;
	ts->tv_sec = now.tv_sec + (time_t)(wait_ms / 1000);
	ts->tv_nsec = now.tv_nsec + (long)(wait_ms % 1000) * 1000000;
	if (ts->tv_nsec >= NSEC_PER_SEC) {
		ts->tv_sec++;
		ts->tv_nsec -= NSEC_PER_SEC;
	}
}

static void *poll_thread(void *arg)
{
	struct poll_thread *pt = arg;
	struct mailbox_watch *w = pt->w;
	struct timespec until;

	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		pthread_mutex_unlock(&w->lock);
		uint64_t start = mf_now_ms();
		poll_part(w, pt->part, w->parts);
		deadline_after(&until, start, MAILBOX_WATCH_POLL_MS);
		pthread_mutex_lock(&w->lock);
		while (!w->stopping && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int mailbox_watch_start(struct mailbox_watch *w, unsigned threads, const char **error_r)
{
	unsigned n = MF_MAX(threads, 1u);

	w->threads = mf_calloc(n, sizeof(*w->threads));
	w->parts = n;
	for (unsigned i = 0; i < n; i++) {
		struct poll_thread *pt = &w->threads[i];
		pt->w = w;
		pt->part = i;
		if (pthread_create(&pt->thread, NULL, poll_thread, pt) != 0) {
			*error_r = "cannot start the mailbox poll threads";
			return -1;
		}
		w->thread_count++;
	}
	return 0;
}

void mailbox_watch_free(struct mailbox_watch **wp)
{
	struct mailbox_watch *w = *wp;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->thread_count; i++)
		pthread_join(w->threads[i].thread, NULL);
	free(w->threads);
	if (w->watcher_count > 0)
		log_error("mailbox watch freed with %u watchers left", w->watcher_count);
	for (unsigned b = 0; b < WATCH_BUCKETS; b++) {
		while (w->buckets[b] != NULL) {
			struct watch_entry *e = w->buckets[b];
			w->buckets[b] = e->hnext;
			free(e->path);
			free(e);
		}
	}
	free(w->buckets);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	*wp = NULL;
}

void mailbox_watch_counts(struct mailbox_watch *w, unsigned *mailboxes_r, unsigned *watchers_r)
{
	pthread_mutex_lock(&w->lock);
	*mailboxes_r = w->entry_count;
	*watchers_r = w->watcher_count;
	pthread_mutex_unlock(&w->lock);
}

uint64_t mailbox_watch_polls(struct mailbox_watch *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t polls = w->polls;
	pthread_mutex_unlock(&w->lock);
	return polls;
}
