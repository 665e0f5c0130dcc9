/* server-private.h: what server.c (loops, listeners, accept, limits) and
 * conn.c (one connection's I/O, TLS, jobs and close path) share. Nothing
 * outside frontend/ includes this. */
#ifndef MF_SERVER_PRIVATE_H
#define MF_SERVER_PRIVATE_H

#include "frontend/server.h"
#include "frontend/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* The first member of everything registered with epoll. */
enum loop_handle_kind { HANDLE_WAKE, HANDLE_LISTENER, HANDLE_CONN };

struct ip_key {
	int family;             /* AF_INET, AF_INET6; 0 = not counted (unix) */
	unsigned char addr[16];
};

struct listener {
	enum loop_handle_kind kind;
	int fd;
	struct mf_listener_config config;   /* strings owned here */
	const struct proto_handler *handler;
	char name[160];                     /* "lmtp 127.0.0.1:2424" */
	bool unlink_on_free;
};

/* One conn_run_blocking() call: runs on a worker, then is posted back to
 * the connection's loop. */
struct conn_job {
	struct worker_job base;
	struct conn_job *done_next;
	struct loop *loop;
	struct conn *conn;
	conn_work_fn *work;
	conn_done_fn *done;
	void *arg;
};

struct loop {
	enum loop_handle_kind kind;         /* HANDLE_WAKE: the eventfd */
	struct server *server;
	unsigned index;
	int epfd;
	int wakefd;
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t lock;               /* guards done_head/tail, wake_list */
	struct conn_job *done_head, *done_tail;
	struct conn *wake_list;             /* conn_wake() from any thread */

	struct conn *conns;                 /* every live connection of this loop */
	unsigned conn_count;
	struct conn *reap_list;             /* closing, to be freed after the pass */
	struct conn *again_list;            /* TLS has decrypted input buffered */

	bool stopping;
	uint64_t stop_started_ms;
	uint64_t accept_paused_until_ms;
	unsigned refusals_logged;           /* this second */
	unsigned refusals_unlogged;
	atomic_bool finished;
	_Atomic uint64_t last_pass_ms;      /* for server_loops_alive() */

	unsigned char scratch[65536];       /* read buffer */
};

struct server {
	struct server_settings set;
	struct loop *loops;
	unsigned loop_count;
	struct listener listeners[MF_LISTENERS_MAX];
	unsigned listener_count;
	struct worker_pool *workers;
	atomic_uint conn_count;
	atomic_uint next_conn_id;
	atomic_bool stopping;
	pthread_mutex_t ip_lock;
	struct ip_count **ip_table;        /* chained hash, IP_TABLE_SIZE buckets */
	char error[512];
};

/* server.c */
void server_conn_released(struct server *server, const struct ip_key *ip);
void loop_post_done(struct loop *loop, struct conn_job *job);

/* conn.c */
void conn_accepted(struct loop *loop, int fd, struct listener *l,
		   const char *peer, const struct ip_key *ip);
void conn_handle_event(struct conn *conn, uint32_t events);
/* Once per second: idle and close timeouts. */
void conn_loop_tick(struct loop *loop, uint64_t now_ms);
void conn_loop_run_again(struct loop *loop);
void conn_loop_reap(struct loop *loop);
void conn_loop_done_jobs(struct loop *loop);
/* Calls session_wake() of the connections conn_wake() named. */
void conn_loop_wakes(struct loop *loop);
/* Shutdown: close every connection that has no job running. force also
 * drops queued output. */
void conn_loop_close_all(struct loop *loop, bool force);

#endif
