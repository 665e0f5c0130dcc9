/* test-mailbox-watch.c: store/mailbox-watch.c on the in-memory backend:
 * one entry per mailbox whatever the number of watchers, the first poll's
 * wake, a poll waking only the watchers of the mailbox that changed,
 * notifications by path and by name, entries leaving with their last
 * watcher, whole-second mtimes waking once more, a vanished mailbox, and
 * the poll thread together with notifications from other threads. */
#include "tests/unit/test.h"
#include "store/mailbox-watch.h"
#include "store/store.h"
#include "store/io.h"

#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

#define DOM "example.test"
#define INBOX_A DOM "/a/Maildir"
#define INBOX_B DOM "/b/Maildir"

static struct store *new_store(void)
{
	struct store_settings set;
	struct store *store;
	const char *error;

	store_settings_defaults(&set);
	set.hostname = "unit";
	if (store_new(io_mem_new(), &set, &store, &error) < 0) {
		fprintf(stderr, "store_new: %s\n", error);
		exit(1);
	}
	return store;
}

static void deliver(struct store *store, const char *user, const char *folder)
{
	static const char text[] = "Subject: x\n\nbody\n";
	struct iovec iov = { .iov_base = (void *)text, .iov_len = sizeof(text) - 1 };
	char *base;
	const char *error;

	CHECK(store_deliver(store, DOM, user, folder, &iov, 1, sizeof(text) - 1, &base, &error) == 0);
	free(base);
}

struct counter {
	pthread_mutex_t lock;
	unsigned wakes;
};

static void count_wake(void *context)
{
	struct counter *c = context;

	pthread_mutex_lock(&c->lock);
	c->wakes++;
	pthread_mutex_unlock(&c->lock);
}

static unsigned take(struct counter *c)
{
	pthread_mutex_lock(&c->lock);
	unsigned n = c->wakes;
	c->wakes = 0;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static void test_one_entry_per_mailbox(void)
{
	struct store *store = new_store();
	struct mailbox_watch *w = mailbox_watch_new(store);
	struct mailbox_watcher *wr[5];
	struct counter a = { PTHREAD_MUTEX_INITIALIZER, 0 }, b = { PTHREAD_MUTEX_INITIALIZER, 0 };
	unsigned boxes, watchers;

	deliver(store, "a", NULL);
	deliver(store, "b", NULL);
	for (int i = 0; i < 4; i++)
		wr[i] = mailbox_watch_add(w, INBOX_A, count_wake, &a);
	wr[4] = mailbox_watch_add(w, INBOX_B, count_wake, &b);
	mailbox_watch_counts(w, &boxes, &watchers);
	CHECK_INT_EQ(boxes, 2);
	CHECK_INT_EQ(watchers, 5);

	/* the first poll has nothing to compare with: everyone looks once */
	mailbox_watch_poll(w);
	CHECK_INT_EQ(mailbox_watch_polls(w), 2);
	CHECK_INT_EQ(take(&a), 4);
	CHECK_INT_EQ(take(&b), 1);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 0);
	CHECK_INT_EQ(take(&b), 0);

	/* a change to a's inbox wakes a's watchers only */
	usleep(2000);
	deliver(store, "a", NULL);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 4);
	CHECK_INT_EQ(take(&b), 0);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 0);

	/* notifications: by path, by name, and for mailboxes nobody watches */
	mailbox_watch_notify(w, INBOX_B);
	CHECK_INT_EQ(take(&b), 1);
	mailbox_watch_notify_mailbox(w, DOM, "a", "INBOX");
	CHECK_INT_EQ(take(&a), 4);
	mailbox_watch_notify_mailbox(w, DOM, "a", "Other");
	mailbox_watch_notify_mailbox(w, DOM, "../x", NULL);
	mailbox_watch_notify(w, DOM "/c/Maildir");
	mailbox_watch_notify(NULL, INBOX_A);
	CHECK_INT_EQ(take(&a), 0);

	/* the entry goes with its last watcher */
	for (int i = 0; i < 4; i++)
		mailbox_watch_remove(&wr[i]);
	CHECK(wr[0] == NULL);
	mailbox_watch_counts(w, &boxes, &watchers);
	CHECK_INT_EQ(boxes, 1);
	CHECK_INT_EQ(watchers, 1);
	mailbox_watch_notify(w, INBOX_A);
	CHECK_INT_EQ(take(&a), 0);
	mailbox_watch_remove(&wr[4]);
	mailbox_watch_remove(&wr[4]);   /* NULL is fine */
	mailbox_watch_counts(w, &boxes, &watchers);
	CHECK_INT_EQ(boxes, 0);
	mailbox_watch_free(&w);
	CHECK(w == NULL);
	store_free(&store);
}

static void test_whole_second_mtimes_and_missing(void)
{
	struct store *store = new_store();
	struct mailbox_watch *w = mailbox_watch_new(store);
	struct counter a = { PTHREAD_MUTEX_INITIALIZER, 0 };
	struct mailbox_watcher *wr;

	deliver(store, "a", NULL);
	wr = mailbox_watch_add(w, INBOX_A, count_wake, &a);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 1);
	/* a store that keeps whole seconds only: a second change within the
	 * same second would not move the mtime, so one more wake follows */
	CHECK(io_utimes(store_io(store), INBOX_A "/new", 0, 1000) == 0);
	CHECK(io_utimes(store_io(store), INBOX_A "/cur", 0, 1000) == 0);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 1);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 1);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 0);
	mailbox_watch_remove(&wr);

	/* a mailbox that does not exist: no state, no wakes */
	wr = mailbox_watch_add(w, DOM "/a/Maildir/.Gone", count_wake, &a);
	mailbox_watch_poll(w);
	mailbox_watch_poll(w);
	CHECK_INT_EQ(take(&a), 0);
	mailbox_watch_remove(&wr);
	mailbox_watch_free(&w);
	store_free(&store);
}

struct notifier {
	struct mailbox_watch *w;
	unsigned rounds;
};

static void *notify_thread(void *arg)
{
	struct notifier *n = arg;

	for (unsigned i = 0; i < n->rounds; i++)
		mailbox_watch_notify_mailbox(n->w, DOM, "a", NULL);
	return NULL;
}

static void test_poll_thread_and_concurrent_notify(void)
{
	struct store *store = new_store();
	struct mailbox_watch *w = mailbox_watch_new(store);
	struct counter a = { PTHREAD_MUTEX_INITIALIZER, 0 };
	struct notifier n = { w, 2000 };
	pthread_t th[2];
	const char *error;

	deliver(store, "a", NULL);
	CHECK(mailbox_watch_start(w, 3, &error) == 0);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, notify_thread, &n);
	/* watchers come and go while notifications and polls run */
	for (int i = 0; i < 500; i++) {
		struct mailbox_watcher *wr = mailbox_watch_add(w, INBOX_A, count_wake, &a);
		mailbox_watch_remove(&wr);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	struct mailbox_watcher *wr = mailbox_watch_add(w, INBOX_A, count_wake, &a);
	take(&a);
	/* the thread polls about once a second: within 2.5 s it must have */
	uint64_t before = mailbox_watch_polls(w);
	usleep(2500 * 1000);
	CHECK(mailbox_watch_polls(w) >= before + 1);
	CHECK(mailbox_watch_polls(w) <= before + 4);
	usleep(2000);
	deliver(store, "a", NULL);
	usleep(1500 * 1000);
	CHECK(take(&a) >= 1);
	mailbox_watch_remove(&wr);
	mailbox_watch_free(&w);
	store_free(&store);
}

int main(void)
{
	test_run(test_one_entry_per_mailbox);
	test_run(test_whole_second_mtimes_and_missing);
	test_run(test_poll_thread_and_concurrent_notify);
	return test_exit();
}
