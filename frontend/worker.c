/* worker.c: see worker.h. A mutex-protected FIFO and a condition variable;
 * freeing the pool drains the queue first, so a job submitted before
 * shutdown always runs (its submitter waits for the report). */
#include "frontend/worker.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct worker_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct worker_job *head, *tail;
	unsigned pending;       /* queued + running */
	bool stopping;
	pthread_t *threads;
	unsigned thread_count;
};

static struct worker_job *next_job(struct worker_pool *pool)
{
	struct worker_job *job;

	pthread_mutex_lock(&pool->lock);
	while (pool->head == NULL && !pool->stopping)
		pthread_cond_wait(&pool->cond, &pool->lock);
	job = pool->head;
	if (job != NULL) {
		pool->head = job->next;
		if (pool->head == NULL)
			pool->tail = NULL;
	}
	pthread_mutex_unlock(&pool->lock);
	return job;
}

static void *worker_thread(void *arg)
{
	struct worker_pool *pool = arg;
	struct worker_job *job;

	while ((job = next_job(pool)) != NULL) {
		job->next = NULL;
		job->run(job);
		pthread_mutex_lock(&pool->lock);
		pool->pending--;
		pthread_mutex_unlock(&pool->lock);
	}
	return NULL;
}

struct worker_pool *worker_pool_new(unsigned threads)
{
	struct worker_pool *pool = mf_calloc(1, sizeof(*pool));

	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->threads = mf_calloc(threads, sizeof(pthread_t));
	for (unsigned i = 0; i < threads; i++) {
		int err = pthread_create(&pool->threads[i], NULL, worker_thread, pool);
		if (err != 0) {
			log_error("worker thread: %s", strerror(err));
			break;
		}
		pool->thread_count++;
	}
	if (pool->thread_count == 0)
		abort();
	return pool;
}

void worker_pool_submit(struct worker_pool *pool, struct worker_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&pool->lock);
	if (pool->tail != NULL)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->pending++;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

unsigned worker_pool_pending(struct worker_pool *pool)
{
	unsigned n;

	pthread_mutex_lock(&pool->lock);
	n = pool->pending;
	pthread_mutex_unlock(&pool->lock);
	return n;
}

void worker_pool_free(struct worker_pool **poolp)
{
	struct worker_pool *pool = *poolp;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->thread_count; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
	*poolp = NULL;
}
