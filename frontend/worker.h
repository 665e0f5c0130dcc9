/* worker.h: a fixed pool of threads that run jobs which may block (store
 * calls on a stalled NAS). A job is an embedded struct whose run() the pool
 * calls once on some worker thread; reporting back is run()'s business. */
#ifndef MF_WORKER_H
#define MF_WORKER_H

#include "lib/lib.h"

struct worker_pool;

struct worker_job {
	void (*run)(struct worker_job *job);
	struct worker_job *next;   /* the pool's queue link */
};

struct worker_pool *worker_pool_new(unsigned threads);
void worker_pool_submit(struct worker_pool *pool, struct worker_job *job);
/* Jobs queued or running. */
unsigned worker_pool_pending(struct worker_pool *pool);
/* Runs every queued job to its end, then joins the threads and frees. */
void worker_pool_free(struct worker_pool **pool);

#endif
