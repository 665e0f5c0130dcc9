/* server.h: mailfleetd's network runtime. N event-loop threads (epoll, level
 * triggered) share the listening sockets and each owns the connections it
 * accepted; a worker pool runs conn_run_blocking() jobs. Limits on
 * connections (node total, per client IP) are enforced at accept: the socket
 * is just closed, with a log line. Protocol modules see only conn.h. */
#ifndef MF_SERVER_H
#define MF_SERVER_H

#include "frontend/conn.h"

struct server;
struct tls_ctx;

struct server_settings {
	struct mf_limits limits;
	unsigned event_threads;      /* 0 = one per online CPU */
	unsigned worker_threads;     /* at least 1 */
	struct tls_ctx *tls;         /* NULL = no TLS (not owned) */
	struct mf_context *context;  /* handed to protocol modules (not owned) */
};

struct server *server_new(const struct server_settings *set);
/* Binds and listens (call as root for ports below 1024). Unix socket paths
 * that hold a stale socket are replaced. *error_r is owned by the server and
 * valid until the next call. */
int server_listen(struct server *server, const struct mf_listener_config *l,
		  const struct proto_handler *handler, const char **error_r);
/* The bound TCP port of the index-th listener (useful with port 0). */
unsigned server_listener_port(struct server *server, unsigned index);
/* Starts the worker and loop threads. */
int server_start(struct server *server, const char **error_r);
/* Asks the loops to stop accepting and to close connections as soon as
 * their store job (if any) finished and their output is flushed. Returns at
 * once; thread-safe. */
void server_stop(struct server *server);
/* Waits up to timeout_ms for the loops to end. False when some connection
 * still waits for a store job (then the server must not be freed). */
bool server_wait(struct server *server, unsigned timeout_ms);
/* Frees a stopped (or never started) server, closing the listeners. */
void server_free(struct server **server);
unsigned server_connection_count(struct server *server);
/* True when every loop completed a pass within max_stall_ms (for the
 * systemd watchdog: a wedged loop stops the pings). */
bool server_loops_alive(struct server *server, unsigned max_stall_ms);

#endif
